package store

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"gorm.io/gorm"
)

// checkURL refuses URLs that carry credentials: those go to a credential
// reference. The error never repeats the URL.
func checkURL(raw string) error {
	if strings.TrimSpace(raw) == "" {
		return invalid("empty subscription URL")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return invalid("subscription URL does not parse")
	}
	if u.User != nil {
		return invalid("subscription URL holds credentials: store a credential reference (file:/path or env:NAME) instead")
	}
	return nil
}

// CreateSubscription creates a subscription from s.UUID, URL, Description,
// Authorised, UpdateMode, CredentialRef and Updated (the caller's clock).
// Floor and LatestList start empty; AcceptList fills them. An existing UUID
// or URL is ErrConflict; a URL with user:password@ is ErrInvalid.
func (s *Store) CreateSubscription(ctx context.Context, sub Subscription) (Subscription, error) {
	op := fmt.Sprintf("create subscription %q", sub.UUID)
	switch {
	case strings.TrimSpace(sub.UUID) == "":
		return Subscription{}, wrap(op, invalid("empty list identifier"))
	case !sub.UpdateMode.Valid():
		return Subscription{}, wrap(op, invalid("update mode %d (want 0, 1 or 3)", sub.UpdateMode))
	}
	if err := checkURL(sub.URL); err != nil {
		return Subscription{}, wrap(op, err)
	}
	if err := CheckCredentialRef(sub.CredentialRef); err != nil {
		return Subscription{}, wrap(op, err)
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
	err := s.write(ctx, func(tx *gorm.DB) error {
		if err := tx.Create(&row).Error; err != nil {
			return fmt.Errorf("identifier or URL taken: %w", mapErr(err))
		}
		return nil
	})
	if err != nil {
		return Subscription{}, wrap(op, err)
	}
	return subscriptionDomain(&row, nil), nil
}

// GetSubscription returns the subscription whose UUID, or else whose URL,
// is key.
func (s *Store) GetSubscription(ctx context.Context, key string) (Subscription, error) {
	db := s.read(ctx)
	row, err := findSubscription(db, key)
	if err != nil {
		return Subscription{}, wrap("get subscription", err)
	}
	out, err := subscriptionsWithLists(db, []subscriptionRow{row})
	if err != nil {
		return Subscription{}, wrap("get subscription", err)
	}
	return out[0], nil
}

// ListSubscriptions returns every subscription in creation order.
func (s *Store) ListSubscriptions(ctx context.Context) ([]Subscription, error) {
	db := s.read(ctx)
	var rows []subscriptionRow
	if err := db.Order("id").Find(&rows).Error; err != nil {
		return nil, wrap("list subscriptions", err)
	}
	out, err := subscriptionsWithLists(db, rows)
	return out, wrap("list subscriptions", err)
}

// UpdateSubscription changes the fields of u that are set and returns the
// result.
func (s *Store) UpdateSubscription(ctx context.Context, key string, u SubscriptionUpdate) (Subscription, error) {
	op := fmt.Sprintf("update subscription %q", key)
	set := map[string]any{}
	if u.Description != nil {
		set["description"] = *u.Description
	}
	if u.Authorised != nil {
		set["authorised"] = *u.Authorised
	}
	if u.UpdateMode != nil {
		if !u.UpdateMode.Valid() {
			return Subscription{}, wrap(op, invalid("update mode %d (want 0, 1 or 3)", *u.UpdateMode))
		}
		set["update_mode"] = int(*u.UpdateMode)
	}
	if u.CredentialRef != nil {
		if err := CheckCredentialRef(*u.CredentialRef); err != nil {
			return Subscription{}, wrap(op, err)
		}
		set["credential_ref"] = *u.CredentialRef
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		row, err := findSubscription(tx, key)
		if err != nil {
			return err
		}
		if len(set) == 0 {
			return nil
		}
		return tx.Model(&subscriptionRow{}).Where("id = ?", row.ID).Updates(set).Error
	})
	if err != nil {
		return Subscription{}, wrap(op, err)
	}
	return s.GetSubscription(ctx, key)
}

// DeleteSubscription deletes a subscription with its links, every list it
// accepted and all its images, and returns the images as they were (for
// the cache to expire them, R9).
func (s *Store) DeleteSubscription(ctx context.Context, key string) ([]Image, error) {
	op := fmt.Sprintf("delete subscription %q", key)
	var images []Image
	err := s.write(ctx, func(tx *gorm.DB) error {
		row, err := findSubscription(tx, key)
		if err != nil {
			return err
		}
		if images, err = listImages(tx, "d.subscription_id = ?", row.ID); err != nil {
			return err
		}
		return tx.Delete(&subscriptionRow{}, row.ID).Error
	})
	if err != nil {
		return nil, wrap(op, err)
	}
	return images, nil
}

// ResetFloor clears a subscription's trust floor so that the next list is
// accepted whatever its version and creation date (R7: only on the
// operator's explicit command). It returns the floor it cleared.
func (s *Store) ResetFloor(ctx context.Context, key string) (Floor, error) {
	var old Floor
	err := s.write(ctx, func(tx *gorm.DB) error {
		row, err := findSubscription(tx, key)
		if err != nil {
			return err
		}
		old = Floor{Version: row.FloorVersion, Created: fromPtr(row.FloorCreated)}
		return tx.Model(&subscriptionRow{}).Where("id = ?", row.ID).
			Updates(map[string]any{"floor_version": "", "floor_created": nil}).Error
	})
	if err != nil {
		return Floor{}, wrap(fmt.Sprintf("reset floor of subscription %q", key), err)
	}
	return old, nil
}

// LatestList returns the subscription's last accepted list with its raw
// signed bytes; ErrNotFound before the first.
func (s *Store) LatestList(ctx context.Context, key string) (ListInstance, error) {
	op := fmt.Sprintf("latest list of subscription %q", key)
	db := s.read(ctx)
	sub, err := findSubscription(db, key)
	if err != nil {
		return ListInstance{}, wrap(op, err)
	}
	if sub.LatestListID == nil {
		return ListInstance{}, wrap(op, fmt.Errorf("no list accepted yet: %w", ErrNotFound))
	}
	var row listRow
	if err := db.Take(&row, *sub.LatestListID).Error; err != nil {
		return ListInstance{}, wrap(op, err)
	}
	return row.domain(sub.Identifier), nil
}

// GetList returns one accepted list, with its raw bytes, by ID.
func (s *Store) GetList(ctx context.Context, id int64) (ListInstance, error) {
	op := fmt.Sprintf("list %d", id)
	db := s.read(ctx)
	var row listRow
	if err := db.Take(&row, id).Error; err != nil {
		return ListInstance{}, wrap(op, err)
	}
	var sub subscriptionRow
	if err := db.Select("identifier").Take(&sub, row.SubscriptionID).Error; err != nil {
		return ListInstance{}, wrap(op, err)
	}
	return row.domain(sub.Identifier), nil
}

// Lists returns every list a subscription accepted, oldest first, without
// their raw bytes.
func (s *Store) Lists(ctx context.Context, key string) ([]ListInstance, error) {
	op := fmt.Sprintf("lists of subscription %q", key)
	db := s.read(ctx)
	sub, err := findSubscription(db, key)
	if err != nil {
		return nil, wrap(op, err)
	}
	var rows []listRow
	if err := db.Select(listColumnsNoRaw).Where("subscription_id = ?", sub.ID).Order("id").Find(&rows).Error; err != nil {
		return nil, wrap(op, err)
	}
	out := make([]ListInstance, len(rows))
	for i := range rows {
		out[i] = rows[i].domain(sub.Identifier)
	}
	return out, nil
}

// findSubscription looks key up as identifier, then as URL.
func findSubscription(db *gorm.DB, key string) (subscriptionRow, error) {
	var rows []subscriptionRow
	if err := db.Where("identifier = ? OR url = ?", key, key).Find(&rows).Error; err != nil {
		return subscriptionRow{}, fmt.Errorf("subscription %q: %w", key, mapErr(err))
	}
	for _, r := range rows {
		if r.Identifier == key {
			return r, nil
		}
	}
	if len(rows) > 0 {
		return rows[0], nil
	}
	return subscriptionRow{}, fmt.Errorf("subscription %q: %w", key, ErrNotFound)
}

func subscriptionDomain(r *subscriptionRow, latest *ListInstance) Subscription {
	return Subscription{
		UUID:          r.Identifier,
		URL:           r.URL,
		Description:   r.Description,
		Authorised:    r.Authorised,
		UpdateMode:    UpdateMode(r.UpdateMode),
		CredentialRef: r.CredentialRef,
		Floor:         Floor{Version: r.FloorVersion, Created: fromPtr(r.FloorCreated)},
		Updated:       fromPtr(r.Updated),
		Validators:    Validators{ETag: r.ETag, LastModified: r.LastModified},
		LatestList:    latest,
	}
}

func subscriptionsWithLists(db *gorm.DB, rows []subscriptionRow) ([]Subscription, error) {
	var ids []int64
	for _, r := range rows {
		if r.LatestListID != nil {
			ids = append(ids, *r.LatestListID)
		}
	}
	lists := map[int64]listRow{}
	if len(ids) > 0 {
		var ls []listRow
		if err := db.Select(listColumnsNoRaw).Where("id IN ?", ids).Find(&ls).Error; err != nil {
			return nil, err
		}
		for _, l := range ls {
			lists[l.ID] = l
		}
	}
	out := make([]Subscription, len(rows))
	for i := range rows {
		var latest *ListInstance
		if id := rows[i].LatestListID; id != nil {
			if l, ok := lists[*id]; ok {
				li := l.domain(rows[i].Identifier)
				latest = &li
			}
		}
		out[i] = subscriptionDomain(&rows[i], latest)
	}
	return out, nil
}
