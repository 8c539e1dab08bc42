package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
)

// Catalog is the persistent identity of one published catalog (kind
// "vcsp": the vSphere content library). Ids and created times are made once
// and kept for the life of the catalog; versions only grow.
type Catalog struct {
	Kind           string
	ID             string // e.g. urn:uuid:...
	Created        time.Time
	Version        int64 // 0 before the first save
	WrittenVersion int64 // the version whose files were completely written
	Name           string
	Description    string
	Items          []CatalogItem // sorted by Image
}

// CatalogItem is one item of a catalog, keyed by the image identifier. A
// removed item keeps its row (Present false) so that an image that comes
// back gets its old id again.
type CatalogItem struct {
	Image       string
	ID          string
	Created     time.Time
	Version     int64
	Name        string
	Description string
	Type        string
	Folder      string
	Files       []CatalogFile
	Present     bool
}

// CatalogFile is one served file of an item as last published.
type CatalogFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA512 string `json:"sha512"`
	Etag   int64  `json:"etag"`
	Href   string `json:"href,omitempty"`
}

type catalogRow struct {
	ID             int64     `gorm:"column:id;primaryKey"`
	Kind           string    `gorm:"column:kind"`
	UID            string    `gorm:"column:uid"`
	Created        time.Time `gorm:"column:created"`
	Version        int64     `gorm:"column:version"`
	WrittenVersion int64     `gorm:"column:written_version"`
	Name           string    `gorm:"column:name"`
	Description    string    `gorm:"column:description"`
}

func (catalogRow) TableName() string { return "catalogs" }

type catalogItemRow struct {
	ID          int64     `gorm:"column:id;primaryKey"`
	CatalogID   int64     `gorm:"column:catalog_id"`
	Image       string    `gorm:"column:image"`
	UID         string    `gorm:"column:uid"`
	Created     time.Time `gorm:"column:created"`
	Version     int64     `gorm:"column:version"`
	Name        string    `gorm:"column:name"`
	Description string    `gorm:"column:description"`
	Type        string    `gorm:"column:type"`
	Folder      string    `gorm:"column:folder"`
	Files       string    `gorm:"column:files"`
	Present     bool      `gorm:"column:present"`
}

func (catalogItemRow) TableName() string { return "catalog_items" }

// LoadCatalog returns the catalog of kind with all its items (present or
// not), or ErrNotFound before the first SaveCatalog.
func (s *Store) LoadCatalog(ctx context.Context, kind string) (Catalog, error) {
	op := fmt.Sprintf("load catalog %q", kind)
	var row catalogRow
	db := s.read(ctx)
	if err := db.Where("kind = ?", kind).Take(&row).Error; err != nil {
		return Catalog{}, wrap(op, mapErr(err))
	}
	var rows []catalogItemRow
	if err := db.Where("catalog_id = ?", row.ID).Order("image").Find(&rows).Error; err != nil {
		return Catalog{}, wrap(op, mapErr(err))
	}
	c := Catalog{
		Kind: row.Kind, ID: row.UID, Created: utc(row.Created), Version: row.Version,
		WrittenVersion: row.WrittenVersion, Name: row.Name, Description: row.Description,
		Items: make([]CatalogItem, 0, len(rows)),
	}
	for _, r := range rows {
		it := CatalogItem{
			Image: r.Image, ID: r.UID, Created: utc(r.Created), Version: r.Version, Name: r.Name,
			Description: r.Description, Type: r.Type, Folder: r.Folder, Present: r.Present,
		}
		if err := json.Unmarshal([]byte(r.Files), &it.Files); err != nil {
			return Catalog{}, wrap(op, fmt.Errorf("item %q: files: %w", r.Image, err))
		}
		c.Items = append(c.Items, it)
	}
	return c, nil
}

// SaveCatalog stores the catalog header and the given items (inserted or
// replaced by image identifier; items not given are left as they are), in
// one transaction. Versions never go down: a header or item older than
// what is stored is ErrRollback and nothing is written. Ids and created
// times of existing rows are never changed (ErrConflict).
func (s *Store) SaveCatalog(ctx context.Context, c Catalog, items []CatalogItem) error {
	op := fmt.Sprintf("save catalog %q", c.Kind)
	if c.Kind == "" || c.ID == "" || c.Created.IsZero() {
		return wrap(op, invalid("kind, id and created are required"))
	}
	err := s.write(ctx, func(tx *gorm.DB) error {
		var row catalogRow
		err := tx.Where("kind = ?", c.Kind).Take(&row).Error
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			row = catalogRow{Kind: c.Kind, UID: c.ID, Created: utc(c.Created)}
		case err != nil:
			return err
		case row.UID != c.ID || !utc(row.Created).Equal(utc(c.Created)):
			return fmt.Errorf("catalog id or created time changed: %w", ErrConflict)
		case c.Version < row.Version:
			return fmt.Errorf("version %d < stored %d: %w", c.Version, row.Version, ErrRollback)
		}
		row.Version, row.Name, row.Description = c.Version, c.Name, c.Description
		if c.WrittenVersion > row.WrittenVersion {
			row.WrittenVersion = c.WrittenVersion
		}
		if err := tx.Save(&row).Error; err != nil {
			return err
		}
		for _, it := range items {
			if it.Image == "" || it.ID == "" || it.Created.IsZero() || it.Version < 1 {
				return invalid("item %q: image, id, created and version are required", it.Image)
			}
			files, err := json.Marshal(nonNilFiles(it.Files))
			if err != nil {
				return err
			}
			var old catalogItemRow
			err = tx.Where("catalog_id = ? AND image = ?", row.ID, it.Image).Take(&old).Error
			switch {
			case errors.Is(err, gorm.ErrRecordNotFound):
			case err != nil:
				return err
			case old.UID != it.ID || !utc(old.Created).Equal(utc(it.Created)):
				return fmt.Errorf("item %q: id or created time changed: %w", it.Image, ErrConflict)
			case it.Version < old.Version:
				return fmt.Errorf("item %q: version %d < stored %d: %w", it.Image, it.Version, old.Version, ErrRollback)
			}
			r := catalogItemRow{
				ID: old.ID, CatalogID: row.ID, Image: it.Image, UID: it.ID, Created: utc(it.Created),
				Version: it.Version, Name: it.Name, Description: it.Description, Type: it.Type,
				Folder: it.Folder, Files: string(files), Present: it.Present,
			}
			if err := tx.Save(&r).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return wrap(op, mapErr(err))
	}
	return nil
}

// MarkCatalogWritten records that the files of version were completely
// written. It never lowers the mark.
func (s *Store) MarkCatalogWritten(ctx context.Context, kind string, version int64) error {
	err := s.write(ctx, func(tx *gorm.DB) error {
		return tx.Exec(`UPDATE catalogs SET written_version = ? WHERE kind = ? AND written_version < ? AND version >= ?`,
			version, kind, version, version).Error
	})
	if err != nil {
		return wrap(fmt.Sprintf("mark catalog %q written", kind), mapErr(err))
	}
	return nil
}

func nonNilFiles(f []CatalogFile) []CatalogFile {
	if f == nil {
		return []CatalogFile{}
	}
	return f
}

// Counter names kept by AddCounters (monotonic, for /metrics). Gauges set
// with SetCounters use the same table.
const (
	CounterCacheRuns           = "cache_runs_total"
	CounterCacheFailedRuns     = "cache_failed_runs_total"
	CounterBytesIn             = "cache_wire_bytes_in_total"
	CounterBytesOut            = "cache_wire_bytes_out_total"
	CounterImagesPublished     = "cache_images_published_total"
	CounterImagesExpired       = "cache_images_expired_total"
	CounterVerifyFailures      = "cache_verification_failures_total"
	GaugeCacheLastRun          = "cache_last_run_timestamp_seconds"
	GaugeCacheLastResult       = "cache_last_run_exit_code"
	GaugeCacheLastSuccess      = "cache_last_success_timestamp_seconds"
	GaugeCatalogVersion        = "catalog_vcsp_version"
	GaugeCatalogItems          = "catalog_vcsp_items"
	GaugeCatalogLastWrite      = "catalog_vcsp_last_change_timestamp_seconds"
	CounterSubscriptionUpdates = "subscription_updates_total"
)

// AddCounters adds add to counters and sets set, in one transaction.
func (s *Store) AddCounters(ctx context.Context, add, set map[string]int64) error {
	err := s.write(ctx, func(tx *gorm.DB) error {
		for k, v := range add {
			if err := tx.Exec(`INSERT INTO counters (name, value) VALUES (?, ?)
ON CONFLICT (name) DO UPDATE SET value = value + excluded.value`, k, v).Error; err != nil {
				return err
			}
		}
		for k, v := range set {
			if err := tx.Exec(`INSERT INTO counters (name, value) VALUES (?, ?)
ON CONFLICT (name) DO UPDATE SET value = excluded.value`, k, v).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return wrap("update counters", mapErr(err))
	}
	return nil
}

// Counters returns every counter.
func (s *Store) Counters(ctx context.Context) (map[string]int64, error) {
	var rows []struct {
		Name  string
		Value int64
	}
	if err := s.read(ctx).Raw(`SELECT name, value FROM counters`).Scan(&rows).Error; err != nil {
		return nil, wrap("read counters", mapErr(err))
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.Name] = r.Value
	}
	return out, nil
}

// Attempt is the outcome of the last update attempt of a subscription.
type Attempt struct {
	At       time.Time // zero: never attempted
	ExitCode int       // 0 success, else the documented exit code
	Error    string    // one line, credentials redacted by the caller
}

// RecordAttempt stores the outcome of an update attempt (clr-subscribe -U,
// the daemon) so that /metrics and `clr-subscribe -i` can show it. It is
// independent of the list acceptance transaction: a failed update records
// its failure without touching anything else.
func (s *Store) RecordAttempt(ctx context.Context, key string, a Attempt) error {
	op := fmt.Sprintf("record update attempt of %q", key)
	err := s.write(ctx, func(tx *gorm.DB) error {
		res := tx.Exec(`UPDATE subscriptions SET last_attempt = ?, last_result = ?, last_error = ? WHERE identifier = ?`,
			utc(a.At), a.ExitCode, a.Error, key)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return ErrNotFound
		}
		return tx.Exec(`INSERT INTO counters (name, value) VALUES (?, 1)
ON CONFLICT (name) DO UPDATE SET value = value + 1`, CounterSubscriptionUpdates).Error
	})
	if err != nil {
		return wrap(op, mapErr(err))
	}
	return nil
}

// Attempts returns the last attempt of every subscription by identifier.
func (s *Store) Attempts(ctx context.Context) (map[string]Attempt, error) {
	var rows []struct {
		Identifier  string
		LastAttempt *time.Time
		LastResult  int
		LastError   string
	}
	if err := s.read(ctx).Raw(`SELECT identifier, last_attempt, last_result, last_error FROM subscriptions`).Scan(&rows).Error; err != nil {
		return nil, wrap("read update attempts", mapErr(err))
	}
	out := make(map[string]Attempt, len(rows))
	for _, r := range rows {
		out[r.Identifier] = Attempt{At: fromPtr(r.LastAttempt), ExitCode: r.LastResult, Error: r.LastError}
	}
	return out, nil
}
