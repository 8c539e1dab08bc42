package store

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"gorm.io/gorm"
)

// batch is the number of rows per multi-row INSERT (well below SQLite's
// 32766 bound variables with 20 columns).
const batch = 500

// AcceptList records a verified list that the policy accepted, in ONE
// immediate transaction: it
//
//   - refuses (ErrRollback) a list whose hv:version (by
//     opts.CompareVersion) or dc:date:created is below the subscription's
//     floor, checked inside the transaction so no concurrent writer can
//     slip in between (R5, R6);
//   - stores the list with its raw bytes and their SHA-512;
//   - raises the floor to the list's version and creation date;
//   - makes every image of the list available, with a new instance
//     (pointing at this list) if the list describes it differently from
//     its latest instance; an image described exactly as before keeps its
//     instance, so a 10,000-image list that changed one image adds one
//     instance row, not 10,000;
//   - applies opts.NewImages to images the subscription does not have:
//     refuse (not created, reported in Refused), accept (created
//     unselected) or subscribe (created selected);
//   - marks the subscription's images that the list no longer has
//     unavailable (Dropped);
//   - sets the subscription's Updated to list.Imported.
//
// Either all of this happens or nothing does. list.Raw, Version, Created,
// Expires and Imported are required; list.SHA512, if set, must match Raw;
// list.ID, Expired, Revoked and InvalidatedAt are ignored. Image
// identifiers must be unique within the list.
func (s *Store) AcceptList(ctx context.Context, sub string, list ListInstance, images []ImageInstance, opts AcceptOptions) (AcceptResult, error) {
	op := fmt.Sprintf("accept list version %q for subscription %q", list.Version, sub)
	if err := checkAccept(&list, images, opts); err != nil {
		return AcceptResult{}, wrap(op, err)
	}
	var res AcceptResult
	err := s.write(ctx, func(tx *gorm.DB) error {
		var err error
		res, err = s.accept(tx, sub, list, images, opts)
		return err
	})
	if err != nil {
		return AcceptResult{}, wrap(op, err)
	}
	return res, nil
}

func checkAccept(list *ListInstance, images []ImageInstance, opts AcceptOptions) error {
	switch {
	case opts.CompareVersion == nil:
		return invalid("no version comparison")
	case !opts.NewImages.Valid():
		return invalid("new-image mode %d (want 0, 1 or 3)", opts.NewImages)
	case len(list.Raw) == 0:
		return invalid("no raw list bytes")
	case list.Version == "":
		return invalid("no list version")
	case list.Created.IsZero() || list.Expires.IsZero() || list.Imported.IsZero():
		return invalid("list created, expires and imported times are required")
	}
	sum := sha512.Sum512(list.Raw)
	h := hex.EncodeToString(sum[:])
	if list.SHA512 != "" && !strings.EqualFold(list.SHA512, h) {
		return invalid("list SHA-512 does not match its raw bytes")
	}
	list.SHA512 = h
	seen := make(map[string]bool, len(images))
	for i, im := range images {
		switch {
		case im.Identifier == "":
			return invalid("image %d has no identifier", i)
		case seen[im.Identifier]:
			return invalid("image %s appears twice in the list", im.Identifier)
		case len(im.Files) > 0 && !json.Valid(im.Files):
			return invalid("image %s: files are not JSON", im.Identifier)
		case len(im.Extra) > 0 && !json.Valid(im.Extra):
			return invalid("image %s: extra keys are not JSON", im.Identifier)
		}
		seen[im.Identifier] = true
	}
	return nil
}

// known is an image definition with the content of its latest instance.
type known struct {
	ID          int64  `gorm:"column:id"`
	Ident       string `gorm:"column:identifier"`
	Available   bool   `gorm:"column:available"`
	SHA512      string `gorm:"column:sha512"`
	Size        int64  `gorm:"column:size"`
	Fingerprint string `gorm:"column:fingerprint"`
	HasLatest   bool   `gorm:"column:has_latest"`
}

func (s *Store) accept(tx *gorm.DB, key string, list ListInstance, images []ImageInstance, opts AcceptOptions) (AcceptResult, error) {
	var res AcceptResult
	sub, err := findSubscription(tx, key)
	if err != nil {
		return res, err
	}
	// The floor check (R5/R6). The transaction holds the write lock since
	// BEGIN IMMEDIATE, so the floor read here is the one we replace.
	floor := Floor{Version: sub.FloorVersion, Created: fromPtr(sub.FloorCreated)}
	if floor.Version != "" && opts.CompareVersion(list.Version, floor.Version) < 0 {
		return res, fmt.Errorf("version %q is below the floor %q: %w", list.Version, floor.Version, ErrRollback)
	}
	if !floor.Created.IsZero() && list.Created.Before(floor.Created) {
		return res, fmt.Errorf("created %s is before the floor %s: %w",
			list.Created.UTC().Format(time.RFC3339), floor.Created.Format(time.RFC3339), ErrRollback)
	}

	lr := listRow{
		SubscriptionID: sub.ID,
		Raw:            list.Raw,
		SHA512:         list.SHA512,
		Version:        list.Version,
		Created:        list.Created.UTC(),
		Expires:        list.Expires.UTC(),
		Imported:       list.Imported.UTC(),
		SignerDN:       list.SignerDN,
		IssuerDN:       list.IssuerDN,
	}
	if err := tx.Create(&lr).Error; err != nil {
		return res, fmt.Errorf("store list: %w", mapErr(err))
	}
	res.ListID = lr.ID

	var defs []known
	err = tx.Table("image_definitions AS d").
		Select("d.id, d.identifier, d.available, coalesce(i.sha512, '') AS sha512, coalesce(i.size, 0) AS size, "+
			"coalesce(i.fingerprint, '') AS fingerprint, i.id IS NOT NULL AS has_latest").
		Joins("LEFT JOIN image_instances i ON i.id = d.latest_instance_id").
		Where("d.subscription_id = ?", sub.ID).
		Scan(&defs).Error
	if err != nil {
		return res, fmt.Errorf("read images: %w", err)
	}
	byIdent := make(map[string]*known, len(defs))
	for i := range defs {
		byIdent[defs[i].Ident] = &defs[i]
	}

	// Classify. An image described exactly as before keeps its instance;
	// a new or changed description gets an instance of this list.
	var (
		newDefs      []definitionRow
		needInstance []ImageInstance
		fps          = make([]string, len(images))
		listed       = make(map[string]bool, len(images))
		makeAvail    []int64
	)
	for n, im := range images {
		listed[im.Identifier] = true
		fps[n] = fingerprint(im)
		k := byIdent[im.Identifier]
		switch {
		case k == nil && !opts.NewImages.AcceptsNew():
			res.Refused = append(res.Refused, im.Identifier)
			continue
		case k == nil:
			sel := opts.NewImages.SelectsNew()
			newDefs = append(newDefs, definitionRow{SubscriptionID: sub.ID, Identifier: im.Identifier, Selected: sel, Available: true})
			res.New = append(res.New, im.Identifier)
			if sel {
				res.Selected = append(res.Selected, im.Identifier)
			}
			needInstance = append(needInstance, im)
			continue
		case k.HasLatest && (k.SHA512 != im.SHA512 || k.Size != im.Size):
			res.Updated = append(res.Updated, im.Identifier)
		default:
			res.Unchanged = append(res.Unchanged, im.Identifier)
		}
		if !k.HasLatest || fps[n] == "" || k.Fingerprint != fps[n] {
			needInstance = append(needInstance, im)
		}
		if !k.Available {
			makeAvail = append(makeAvail, k.ID)
		}
	}
	var makeUnavail []int64
	for _, d := range defs {
		if d.Available && !listed[d.Ident] {
			res.Dropped = append(res.Dropped, d.Ident)
			makeUnavail = append(makeUnavail, d.ID)
		}
	}
	sort.Strings(res.Dropped)

	// New definitions first: their IDs are needed by the instances.
	if len(newDefs) > 0 {
		if err := tx.CreateInBatches(&newDefs, batch).Error; err != nil {
			return res, fmt.Errorf("store new images: %w", mapErr(err))
		}
	}
	defID := make(map[string]int64, len(defs)+len(newDefs))
	for _, d := range defs {
		defID[d.Ident] = d.ID
	}
	for _, d := range newDefs {
		defID[d.Identifier] = d.ID
	}
	if len(needInstance) > 0 {
		inst := make([]instanceRow, len(needInstance))
		for i, im := range needInstance {
			inst[i] = newInstanceRow(defID[im.Identifier], lr.ID, im)
		}
		if err := tx.CreateInBatches(&inst, batch/2).Error; err != nil {
			return res, fmt.Errorf("store image instances: %w", mapErr(err))
		}
		// Point each of these definitions at its new instance.
		err = tx.Exec(`UPDATE image_definitions SET
			latest_instance_id = (SELECT i.id FROM image_instances i WHERE i.definition_id = image_definitions.id AND i.list_id = ?)
			WHERE id IN (SELECT definition_id FROM image_instances WHERE list_id = ?)`, lr.ID, lr.ID).Error
		if err != nil {
			return res, fmt.Errorf("update images: %w", err)
		}
	}
	if err := setAvailable(tx, makeAvail, true); err != nil {
		return res, err
	}
	if err := setAvailable(tx, makeUnavail, false); err != nil {
		return res, err
	}

	if s.acceptHook != nil {
		if err := s.acceptHook(); err != nil {
			return res, err
		}
	}

	// Raise the floor. Both parts only rise: the checks above refused
	// anything lower.
	res.Floor = Floor{Version: list.Version, Created: list.Created.UTC()}
	var v Validators
	if opts.Validators != nil {
		v = *opts.Validators
	}
	err = tx.Model(&subscriptionRow{}).Where("id = ?", sub.ID).Updates(map[string]any{
		"floor_version":  res.Floor.Version,
		"floor_created":  res.Floor.Created,
		"latest_list_id": lr.ID,
		"updated":        list.Imported.UTC(),
		"etag":           v.ETag,
		"last_modified":  v.LastModified,
	}).Error
	if err != nil {
		return res, fmt.Errorf("raise floor: %w", err)
	}
	return res, nil
}

func setAvailable(tx *gorm.DB, ids []int64, v bool) error {
	for len(ids) > 0 {
		n := min(len(ids), batch)
		if err := tx.Model(&definitionRow{}).Where("id IN ?", ids[:n]).Update("available", v).Error; err != nil {
			return fmt.Errorf("update image availability: %w", err)
		}
		ids = ids[n:]
	}
	return nil
}

// MarkListExpired invalidates a subscription's latest list, because it
// expired or its signer was revoked, and makes all the subscription's
// images unavailable (R9): the cache expires them. now is the caller's
// clock. It returns the images that were available and no longer are;
// marking again changes nothing. A later valid list makes the images
// available again.
func (s *Store) MarkListExpired(ctx context.Context, key string, reason ExpiryReason, now time.Time) ([]string, error) {
	op := fmt.Sprintf("mark list of subscription %q %s", key, reason)
	if reason != ListExpired && reason != SignerRevoked {
		return nil, wrap(op, invalid("unknown reason %d", int(reason)))
	}
	if now.IsZero() {
		return nil, wrap(op, invalid("no time"))
	}
	var dropped []string
	err := s.write(ctx, func(tx *gorm.DB) error {
		sub, err := findSubscription(tx, key)
		if err != nil {
			return err
		}
		if sub.LatestListID != nil {
			col := "expired"
			if reason == SignerRevoked {
				col = "revoked"
			}
			err := tx.Model(&listRow{}).Where("id = ? AND NOT "+col, *sub.LatestListID).Updates(map[string]any{
				col:           true,
				"invalidated": gorm.Expr("coalesce(invalidated, ?)", now.UTC()),
			}).Error
			if err != nil {
				return err
			}
		}
		if err := tx.Model(&definitionRow{}).Where("subscription_id = ? AND available", sub.ID).
			Order("identifier").Pluck("identifier", &dropped).Error; err != nil {
			return err
		}
		return tx.Model(&definitionRow{}).Where("subscription_id = ? AND available", sub.ID).
			Update("available", false).Error
	})
	if err != nil {
		return nil, wrap(op, err)
	}
	return dropped, nil
}
