package store

import (
	"context"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// SubscribeRequest is everything `clr-subscribe -s URL` writes.
type SubscribeRequest struct {
	// Subscription: UUID (the list's dc:identifier), URL, Description,
	// Authorised, UpdateMode, CredentialRef and Updated (the run's clock).
	Subscription Subscription
	// Endorser is the existing endorser to link to the subscription, or,
	// with NewEndorser, the one to create first (--auto-endorse).
	Endorser    string
	NewEndorser *Endorser
	// List and Images are the first accepted list (as for AcceptList).
	List    ListInstance
	Images  []ImageInstance
	Options AcceptOptions
}

// Subscribe creates a subscription, optionally its endorser, the link
// between them, and accepts its first list, all in ONE transaction: a
// failure at any step leaves no subscription, endorser or image behind.
func (s *Store) Subscribe(ctx context.Context, req SubscribeRequest) (Subscription, AcceptResult, error) {
	sub := req.Subscription
	op := fmt.Sprintf("store subscription %q", sub.UUID)
	switch {
	case strings.TrimSpace(sub.UUID) == "":
		return Subscription{}, AcceptResult{}, wrap(op, invalid("empty list identifier"))
	case !sub.UpdateMode.Valid():
		return Subscription{}, AcceptResult{}, wrap(op, invalid("update mode %d (want 0, 1 or 3)", sub.UpdateMode))
	case req.NewEndorser == nil && strings.TrimSpace(req.Endorser) == "":
		return Subscription{}, AcceptResult{}, wrap(op, invalid("no endorser to link"))
	}
	if err := checkURL(sub.URL); err != nil {
		return Subscription{}, AcceptResult{}, wrap(op, err)
	}
	if err := CheckCredentialRef(sub.CredentialRef); err != nil {
		return Subscription{}, AcceptResult{}, wrap(op, err)
	}
	list := req.List
	if err := checkAccept(&list, req.Images, req.Options); err != nil {
		return Subscription{}, AcceptResult{}, wrap(op, err)
	}
	var ne *Endorser
	if req.NewEndorser != nil {
		e := Endorser{UUID: strings.TrimSpace(req.NewEndorser.UUID)}
		if e.UUID == "" || len(req.NewEndorser.Principals) == 0 {
			return Subscription{}, AcceptResult{}, wrap(op, invalid("a new endorser needs an identifier and a principal"))
		}
		for _, p := range req.NewEndorser.Principals {
			c, err := cleanPrincipal(p)
			if err != nil {
				return Subscription{}, AcceptResult{}, wrap(op, err)
			}
			e.Principals = append(e.Principals, c)
		}
		ne = &e
	}
	var res AcceptResult
	err := s.write(ctx, func(tx *gorm.DB) error {
		endorser := strings.TrimSpace(req.Endorser)
		if ne != nil {
			row := endorserRow{Identifier: ne.UUID}
			if err := tx.Create(&row).Error; err != nil {
				return fmt.Errorf("create endorser %q: %w", ne.UUID, mapErr(err))
			}
			for _, p := range ne.Principals {
				if err := insertPrincipal(tx, row.ID, p); err != nil {
					return err
				}
			}
			endorser = ne.UUID
		}
		row := subscriptionRow{
			Identifier:    sub.UUID,
			URL:           sub.URL,
			Description:   sub.Description,
			Authorised:    sub.Authorised,
			UpdateMode:    int(sub.UpdateMode),
			CredentialRef: sub.CredentialRef,
			Updated:       timePtr(sub.Updated),
		}
		if err := tx.Create(&row).Error; err != nil {
			return fmt.Errorf("identifier or URL taken: %w", mapErr(err))
		}
		e, err := findEndorser(tx, endorser)
		if err != nil {
			return err
		}
		if err := tx.Create(&linkRow{EndorserID: e.ID, SubscriptionID: row.ID, Authorised: true}).Error; err != nil {
			return fmt.Errorf("link endorser %q: %w", endorser, mapErr(err))
		}
		res, err = s.accept(tx, sub.UUID, list, req.Images, req.Options)
		return err
	})
	if err != nil {
		return Subscription{}, AcceptResult{}, wrap(op, err)
	}
	out, err := s.GetSubscription(ctx, sub.UUID)
	return out, res, err
}

// SetValidators stores the HTTP validators of a response whose list was
// the latest accepted one (unchanged list).
func (s *Store) SetValidators(ctx context.Context, key string, v Validators) error {
	op := fmt.Sprintf("set validators of subscription %q", key)
	return wrap(op, s.write(ctx, func(tx *gorm.DB) error {
		row, err := findSubscription(tx, key)
		if err != nil {
			return err
		}
		return tx.Model(&subscriptionRow{}).Where("id = ?", row.ID).
			Updates(map[string]any{"etag": v.ETag, "last_modified": v.LastModified}).Error
	}))
}
