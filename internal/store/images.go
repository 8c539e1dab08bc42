package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// imageColumns is the image query's select list: the definition, its
// subscription and its latest instance. scanImage reads them in this order.
const imageColumns = `s.identifier, d.identifier, d.selected, (d.available AND s.authorised),
	i.list_id, i.identifier, i.title, i.description, i.uri, i.size, i.version, i.sha512,
	i.hypervisor, i.arch, i.os, i.os_version, i.comments, i.format, i.created, i.expires, i.files, i.extra`

// listImages runs the image query with a plain row scan: gorm's
// reflection costs more than the query on a 10,000-image list.
func listImages(db *gorm.DB, where string, args ...any) ([]Image, error) {
	rows, err := db.Raw(`SELECT `+imageColumns+`
		FROM image_definitions d
		JOIN subscriptions s ON s.id = d.subscription_id
		LEFT JOIN image_instances i ON i.id = d.latest_instance_id
		WHERE `+where+`
		ORDER BY s.identifier, d.identifier`, args...).Rows()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Image
	for rows.Next() {
		var (
			im                                           Image
			listID, size                                 sql.NullInt64
			ident, title, desc, uri, version, sum        sql.NullString
			hyper, arch, osName, osver, comments, format sql.NullString
			created, expires                             sql.NullTime
			files, extra                                 sql.NullString
		)
		err := rows.Scan(&im.Subscription, &im.UUID, &im.Selected, &im.Available,
			&listID, &ident, &title, &desc, &uri, &size, &version, &sum,
			&hyper, &arch, &osName, &osver, &comments, &format, &created, &expires, &files, &extra)
		if err != nil {
			return nil, err
		}
		im.Latest = ImageInstance{
			ListID: listID.Int64, Identifier: ident.String, Title: title.String, Description: desc.String,
			URI: uri.String, Size: size.Int64, Version: version.String, SHA512: sum.String,
			Hypervisor: hyper.String, Arch: arch.String, OS: osName.String, OSVersion: osver.String,
			Comments: comments.String, Format: format.String,
		}
		if created.Valid {
			im.Latest.Created = created.Time.UTC()
		}
		if expires.Valid {
			im.Latest.Expires = expires.Time.UTC()
		}
		if files.Valid {
			im.Latest.Files = json.RawMessage(files.String)
		}
		if extra.Valid {
			im.Latest.Extra = json.RawMessage(extra.String)
		}
		out = append(out, im)
	}
	return out, rows.Err()
}

// ListImages returns the images that match f, ordered by subscription UUID
// then image UUID, each with its latest instance and state.
func (s *Store) ListImages(ctx context.Context, f ImageFilter) ([]Image, error) {
	db := s.read(ctx)
	conds := []string{"1 = 1"}
	var args []any
	if f.Subscription != "" {
		sub, err := findSubscription(db, f.Subscription)
		if err != nil {
			return nil, wrap("list images", err)
		}
		conds = append(conds, "d.subscription_id = ?")
		args = append(args, sub.ID)
	}
	if f.SelectedOnly {
		conds = append(conds, "d.selected")
	}
	if f.AvailableOnly {
		conds = append(conds, "d.available AND s.authorised")
	}
	out, err := listImages(db, strings.Join(conds, " AND "), args...)
	return out, wrap("list images", err)
}

// GetImage returns the one image ref selects: ErrNotFound if none,
// ErrAmbiguous if several subscriptions have a match.
func (s *Store) GetImage(ctx context.Context, ref ImageRef) (Image, error) {
	db := s.read(ctx)
	id, err := resolveImage(db, ref)
	if err != nil {
		return Image{}, wrap("get image", err)
	}
	img, err := imageByID(db, id)
	return img, wrap("get image", err)
}

// SelectImage selects the image ref names for the cache (vmcatcher
// `-a`); selecting a selected image is not an error. Only that
// subscription's image changes.
func (s *Store) SelectImage(ctx context.Context, ref ImageRef) (Image, error) {
	return s.setSelected(ctx, ref, true)
}

// UnselectImage removes the image from the cache selection (vmcatcher
// `-r`); the next cache run expires it (R9).
func (s *Store) UnselectImage(ctx context.Context, ref ImageRef) (Image, error) {
	return s.setSelected(ctx, ref, false)
}

func (s *Store) setSelected(ctx context.Context, ref ImageRef, sel bool) (Image, error) {
	op := "select image"
	if !sel {
		op = "unselect image"
	}
	var img Image
	err := s.write(ctx, func(tx *gorm.DB) error {
		id, err := resolveImage(tx, ref)
		if err != nil {
			return err
		}
		if err := tx.Model(&definitionRow{}).Where("id = ?", id).Update("selected", sel).Error; err != nil {
			return err
		}
		img, err = imageByID(tx, id)
		return err
	})
	if err != nil {
		return Image{}, wrap(op, err)
	}
	return img, nil
}

func imageByID(db *gorm.DB, id int64) (Image, error) {
	imgs, err := listImages(db, "d.id = ?", id)
	if err == nil && len(imgs) == 0 {
		err = ErrNotFound
	}
	if err != nil {
		return Image{}, err
	}
	return imgs[0], nil
}

// resolveImage finds the definition ref names.
func resolveImage(db *gorm.DB, ref ImageRef) (int64, error) {
	if (ref.UUID == "") == (ref.SHA512 == "") {
		return 0, invalid("select an image by UUID or by SHA-512")
	}
	scope, scopeArgs := "1 = 1", []any(nil)
	if ref.Subscription != "" {
		sub, err := findSubscription(db, ref.Subscription)
		if err != nil {
			return 0, err
		}
		scope, scopeArgs = "d.subscription_id = ?", []any{sub.ID}
	}
	type match struct {
		ID  int64  `gorm:"column:id"`
		Sub string `gorm:"column:sub"`
	}
	find := func(cond string, args ...any) ([]match, error) {
		var ms []match
		err := db.Table("image_definitions AS d").Select("DISTINCT d.id AS id, s.identifier AS sub").
			Joins("JOIN subscriptions s ON s.id = d.subscription_id").
			Where(scope, scopeArgs...).Where(cond, args...).
			Order("s.identifier").Scan(&ms).Error
		return ms, err
	}
	var (
		ms   []match
		err  error
		what string
	)
	if ref.UUID != "" {
		what = fmt.Sprintf("image %q", ref.UUID)
		ms, err = find("d.identifier = ?", ref.UUID)
	} else {
		h := strings.ToLower(ref.SHA512)
		what = fmt.Sprintf("image with SHA-512 %s", h)
		ms, err = find("d.latest_instance_id IN (SELECT id FROM image_instances WHERE sha512 = ?)", h)
		if err == nil && len(ms) == 0 {
			ms, err = find("d.id IN (SELECT definition_id FROM image_instances WHERE sha512 = ?)", h)
		}
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, err)
	}
	switch len(ms) {
	case 0:
		if ref.Subscription != "" {
			return 0, fmt.Errorf("%s in subscription %q: %w", what, ref.Subscription, ErrNotFound)
		}
		return 0, fmt.Errorf("%s: %w", what, ErrNotFound)
	case 1:
		return ms[0].ID, nil
	}
	subs := make([]string, len(ms))
	for i, m := range ms {
		subs[i] = m.Sub
	}
	return 0, fmt.Errorf("%s is in subscriptions %s; name one: %w", what, strings.Join(subs, ", "), ErrAmbiguous)
}
