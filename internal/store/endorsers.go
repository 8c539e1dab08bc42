package store

import (
	"context"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

func cleanPrincipal(p Principal) (Principal, error) {
	p.SubjectDN = strings.TrimSpace(p.SubjectDN)
	p.IssuerDN = strings.TrimSpace(p.IssuerDN)
	if p.SubjectDN == "" || p.IssuerDN == "" {
		return p, invalid("a principal needs a subject DN and an issuer DN")
	}
	return p, nil
}

// CreateEndorser creates an endorser with at least one principal. An
// existing identifier or an existing (subject, issuer) pair, of this or
// any other endorser, is ErrConflict.
func (s *Store) CreateEndorser(ctx context.Context, e Endorser) error {
	id := strings.TrimSpace(e.UUID)
	op := fmt.Sprintf("create endorser %q", id)
	if id == "" {
		return wrap(op, invalid("empty endorser identifier"))
	}
	if len(e.Principals) == 0 {
		return wrap(op, invalid("no subject DN and issuer DN"))
	}
	ps := make([]Principal, len(e.Principals))
	for i, p := range e.Principals {
		var err error
		if ps[i], err = cleanPrincipal(p); err != nil {
			return wrap(op, err)
		}
	}
	return wrap(op, s.write(ctx, func(tx *gorm.DB) error {
		row := endorserRow{Identifier: id}
		if err := tx.Create(&row).Error; err != nil {
			return mapErr(err)
		}
		for _, p := range ps {
			if err := insertPrincipal(tx, row.ID, p); err != nil {
				return err
			}
		}
		return nil
	}))
}

func insertPrincipal(tx *gorm.DB, endorserID int64, p Principal) error {
	err := tx.Create(&principalRow{EndorserID: endorserID, SubjectDN: p.SubjectDN, IssuerDN: p.IssuerDN}).Error
	if err != nil {
		return fmt.Errorf("principal %q issued by %q: %w", p.SubjectDN, p.IssuerDN, mapErr(err))
	}
	return nil
}

// AddPrincipal adds a principal to an existing endorser. A pair that any
// endorser already has is ErrConflict.
func (s *Store) AddPrincipal(ctx context.Context, endorser string, p Principal) error {
	op := fmt.Sprintf("add principal to endorser %q", endorser)
	p, err := cleanPrincipal(p)
	if err != nil {
		return wrap(op, err)
	}
	return wrap(op, s.write(ctx, func(tx *gorm.DB) error {
		e, err := findEndorser(tx, endorser)
		if err != nil {
			return err
		}
		return insertPrincipal(tx, e.ID, p)
	}))
}

// RemovePrincipal removes a principal from an endorser; ErrNotFound if the
// endorser does not have it.
func (s *Store) RemovePrincipal(ctx context.Context, endorser string, p Principal) error {
	op := fmt.Sprintf("remove principal from endorser %q", endorser)
	return wrap(op, s.write(ctx, func(tx *gorm.DB) error {
		e, err := findEndorser(tx, endorser)
		if err != nil {
			return err
		}
		res := tx.Where("endorser_id = ? AND subject_dn = ? AND issuer_dn = ?", e.ID, strings.TrimSpace(p.SubjectDN), strings.TrimSpace(p.IssuerDN)).Delete(&principalRow{})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("principal %q issued by %q: %w", p.SubjectDN, p.IssuerDN, ErrNotFound)
		}
		return nil
	}))
}

// DeleteEndorser deletes an endorser, its principals and its links.
func (s *Store) DeleteEndorser(ctx context.Context, endorser string) error {
	op := fmt.Sprintf("delete endorser %q", endorser)
	return wrap(op, s.write(ctx, func(tx *gorm.DB) error {
		e, err := findEndorser(tx, endorser)
		if err != nil {
			return err
		}
		return tx.Delete(&endorserRow{}, e.ID).Error
	}))
}

// GetEndorser returns one endorser with its principals.
func (s *Store) GetEndorser(ctx context.Context, endorser string) (Endorser, error) {
	es, err := s.endorsers(s.read(ctx), "identifier = ?", endorser)
	if err == nil && len(es) == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return Endorser{}, wrap(fmt.Sprintf("endorser %q", endorser), err)
	}
	return es[0], nil
}

// ListEndorsers returns every endorser, in creation order, each with its
// principals in the order they were added.
func (s *Store) ListEndorsers(ctx context.Context) ([]Endorser, error) {
	es, err := s.endorsers(s.read(ctx), "")
	return es, wrap("list endorsers", err)
}

// FindEndorserByPrincipal returns the endorser that has the principal
// (subject, issuer); ErrNotFound if none.
func (s *Store) FindEndorserByPrincipal(ctx context.Context, subjectDN, issuerDN string) (Endorser, error) {
	es, err := s.endorsers(s.read(ctx), "id IN (SELECT endorser_id FROM principals WHERE subject_dn = ? AND issuer_dn = ?)", subjectDN, issuerDN)
	if err == nil && len(es) == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return Endorser{}, wrap(fmt.Sprintf("endorser of %q issued by %q", subjectDN, issuerDN), err)
	}
	return es[0], nil
}

func (s *Store) endorsers(db *gorm.DB, where string, args ...any) ([]Endorser, error) {
	q := db.Model(&endorserRow{}).Order("id")
	if where != "" {
		q = q.Where(where, args...)
	}
	var rows []endorserRow
	if err := q.Find(&rows).Error; err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, nil
	}
	ids := make([]int64, len(rows))
	byID := make(map[int64]int, len(rows))
	out := make([]Endorser, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
		byID[r.ID] = i
		out[i] = Endorser{UUID: r.Identifier}
	}
	var ps []principalRow
	pq := db.Model(&principalRow{}).Order("id")
	if where != "" {
		pq = pq.Where("endorser_id IN ?", ids)
	}
	if err := pq.Find(&ps).Error; err != nil {
		return nil, err
	}
	for _, p := range ps {
		if i, ok := byID[p.EndorserID]; ok {
			out[i].Principals = append(out[i].Principals, Principal{SubjectDN: p.SubjectDN, IssuerDN: p.IssuerDN})
		}
	}
	return out, nil
}

func findEndorser(tx *gorm.DB, identifier string) (endorserRow, error) {
	var row endorserRow
	err := tx.Where("identifier = ?", identifier).Take(&row).Error
	if err != nil {
		return row, fmt.Errorf("endorser %q: %w", identifier, mapErr(err))
	}
	return row, nil
}

// findPair looks up an endorser and a subscription (UUID or URL) for a
// link operation.
func findPair(tx *gorm.DB, endorser, subscription string) (endorserRow, subscriptionRow, error) {
	e, err := findEndorser(tx, endorser)
	if err != nil {
		return e, subscriptionRow{}, err
	}
	sub, err := findSubscription(tx, subscription)
	return e, sub, err
}

// Link links an endorser to a subscription (UUID or URL), authorised. An
// existing link is ErrConflict.
func (s *Store) Link(ctx context.Context, endorser, subscription string) error {
	op := fmt.Sprintf("link endorser %q to subscription %q", endorser, subscription)
	return wrap(op, s.write(ctx, func(tx *gorm.DB) error {
		e, sub, err := findPair(tx, endorser, subscription)
		if err != nil {
			return err
		}
		return mapErr(tx.Create(&linkRow{EndorserID: e.ID, SubscriptionID: sub.ID, Authorised: true}).Error)
	}))
}

// Unlink removes the link between an endorser and a subscription;
// ErrNotFound if there is none.
func (s *Store) Unlink(ctx context.Context, endorser, subscription string) error {
	op := fmt.Sprintf("unlink endorser %q from subscription %q", endorser, subscription)
	return wrap(op, s.write(ctx, func(tx *gorm.DB) error {
		e, sub, err := findPair(tx, endorser, subscription)
		if err != nil {
			return err
		}
		res := tx.Where("endorser_id = ? AND subscription_id = ?", e.ID, sub.ID).Delete(&linkRow{})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return fmt.Errorf("no such link: %w", ErrNotFound)
		}
		return nil
	}))
}

// Links returns the links, restricted to one endorser and/or one
// subscription (UUID or URL) when these are not "", ordered by endorser
// then subscription.
func (s *Store) Links(ctx context.Context, endorser, subscription string) ([]Link, error) {
	q := s.read(ctx).Table("links AS l").
		Select("e.identifier AS endorser, s.identifier AS subscription, l.authorised AS authorised").
		Joins("JOIN endorsers e ON e.id = l.endorser_id").
		Joins("JOIN subscriptions s ON s.id = l.subscription_id").
		Order("e.identifier, s.identifier")
	if endorser != "" {
		q = q.Where("e.identifier = ?", endorser)
	}
	if subscription != "" {
		q = q.Where("s.identifier = ? OR s.url = ?", subscription, subscription)
	}
	var out []Link
	if err := q.Scan(&out).Error; err != nil {
		return nil, wrap("list links", err)
	}
	return out, nil
}

// LinkedPrincipals returns the principals of the endorsers linked
// (authorised) to a subscription: the signers rule R2 accepts for it.
func (s *Store) LinkedPrincipals(ctx context.Context, subscription string) ([]LinkedPrincipal, error) {
	op := fmt.Sprintf("principals linked to subscription %q", subscription)
	db := s.read(ctx)
	sub, err := findSubscription(db, subscription)
	if err != nil {
		return nil, wrap(op, err)
	}
	var rows []struct {
		Endorser  string
		SubjectDN string
		IssuerDN  string
	}
	err = db.Table("links AS l").
		Select("e.identifier AS endorser, p.subject_dn AS subject_dn, p.issuer_dn AS issuer_dn").
		Joins("JOIN endorsers e ON e.id = l.endorser_id").
		Joins("JOIN principals p ON p.endorser_id = e.id").
		Where("l.subscription_id = ? AND l.authorised", sub.ID).
		Order("e.identifier, p.id").
		Scan(&rows).Error
	if err != nil {
		return nil, wrap(op, err)
	}
	out := make([]LinkedPrincipal, len(rows))
	for i, r := range rows {
		out[i] = LinkedPrincipal{Endorser: r.Endorser, Principal: Principal{SubjectDN: r.SubjectDN, IssuerDN: r.IssuerDN}}
	}
	return out, nil
}
