package store

import (
	"context"
	"fmt"
	"strings"

	"gorm.io/gorm"
)

// migration moves the schema from version-1 to version. Its up runs in one
// transaction together with the insert of its version into
// schema_version. A migration, once released, is never edited: a change is
// a new migration appended to the list. Migrations are plain SQL (not
// AutoMigrate of today's structs, which would change what an old migration
// does whenever a struct changes).
type migration struct {
	version int
	name    string
	up      func(tx *gorm.DB) error
}

// migrations is the ordered schema history; versions are 1, 2, 3, ...
var migrations = []migration{
	{1, "initial schema", execAll(schemaV1...)},
	{2, "http validators for conditional GET", execAll(
		`ALTER TABLE subscriptions ADD COLUMN etag TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE subscriptions ADD COLUMN last_modified TEXT NOT NULL DEFAULT ''`,
	)},
	{3, "catalog ids and versions, run results, counters", execAll(schemaV3...)},
}

// SchemaVersion is the schema version this program migrates to.
func SchemaVersion() int { return len(migrations) }

func execAll(stmts ...string) func(tx *gorm.DB) error {
	return func(tx *gorm.DB) error {
		for _, q := range stmts {
			if err := tx.Exec(q).Error; err != nil {
				return fmt.Errorf("%s: %w", firstLine(q), err)
			}
		}
		return nil
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// schemaV1: the image definitions are unique per (subscription, image
// identifier), not globally. Child columns of every foreign key are indexed
// (cascades and SET NULL scan them).
var schemaV1 = []string{
	`CREATE TABLE endorsers (
	id INTEGER PRIMARY KEY,
	identifier TEXT NOT NULL UNIQUE CHECK (identifier <> '')
)`,
	`CREATE TABLE principals (
	id INTEGER PRIMARY KEY,
	endorser_id INTEGER NOT NULL REFERENCES endorsers(id) ON DELETE CASCADE,
	subject_dn TEXT NOT NULL CHECK (subject_dn <> ''),
	issuer_dn TEXT NOT NULL CHECK (issuer_dn <> ''),
	UNIQUE (subject_dn, issuer_dn)
)`,
	`CREATE INDEX principals_endorser ON principals(endorser_id)`,
	`CREATE TABLE subscriptions (
	id INTEGER PRIMARY KEY,
	identifier TEXT NOT NULL UNIQUE CHECK (identifier <> ''),
	url TEXT NOT NULL UNIQUE CHECK (url <> ''),
	description TEXT NOT NULL DEFAULT '',
	authorised INTEGER NOT NULL DEFAULT 1,
	update_mode INTEGER NOT NULL DEFAULT 0 CHECK (update_mode IN (0, 1, 3)),
	credential_ref TEXT NOT NULL DEFAULT '',
	floor_version TEXT NOT NULL DEFAULT '',
	floor_created DATETIME,
	updated DATETIME,
	latest_list_id INTEGER REFERENCES list_instances(id) ON DELETE SET NULL
)`,
	`CREATE INDEX subscriptions_latest_list ON subscriptions(latest_list_id)`,
	`CREATE TABLE links (
	id INTEGER PRIMARY KEY,
	endorser_id INTEGER NOT NULL REFERENCES endorsers(id) ON DELETE CASCADE,
	subscription_id INTEGER NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
	authorised INTEGER NOT NULL DEFAULT 1,
	UNIQUE (endorser_id, subscription_id)
)`,
	`CREATE INDEX links_subscription ON links(subscription_id)`,
	`CREATE TABLE list_instances (
	id INTEGER PRIMARY KEY,
	subscription_id INTEGER NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
	raw BLOB NOT NULL,
	sha512 TEXT NOT NULL,
	version TEXT NOT NULL,
	created DATETIME NOT NULL,
	expires DATETIME NOT NULL,
	imported DATETIME NOT NULL,
	signer_dn TEXT NOT NULL,
	issuer_dn TEXT NOT NULL,
	expired INTEGER NOT NULL DEFAULT 0,
	revoked INTEGER NOT NULL DEFAULT 0,
	invalidated DATETIME
)`,
	`CREATE INDEX list_instances_subscription ON list_instances(subscription_id, id)`,
	`CREATE TABLE image_definitions (
	id INTEGER PRIMARY KEY,
	subscription_id INTEGER NOT NULL REFERENCES subscriptions(id) ON DELETE CASCADE,
	identifier TEXT NOT NULL CHECK (identifier <> ''),
	selected INTEGER NOT NULL DEFAULT 0,
	available INTEGER NOT NULL DEFAULT 0,
	latest_instance_id INTEGER REFERENCES image_instances(id) ON DELETE SET NULL,
	UNIQUE (subscription_id, identifier)
)`,
	`CREATE INDEX image_definitions_identifier ON image_definitions(identifier)`,
	`CREATE INDEX image_definitions_latest ON image_definitions(latest_instance_id)`,
	`CREATE TABLE image_instances (
	id INTEGER PRIMARY KEY,
	definition_id INTEGER NOT NULL REFERENCES image_definitions(id) ON DELETE CASCADE,
	list_id INTEGER NOT NULL REFERENCES list_instances(id) ON DELETE CASCADE,
	identifier TEXT NOT NULL,
	title TEXT NOT NULL DEFAULT '',
	description TEXT NOT NULL DEFAULT '',
	uri TEXT NOT NULL DEFAULT '',
	size INTEGER NOT NULL DEFAULT 0,
	version TEXT NOT NULL DEFAULT '',
	sha512 TEXT NOT NULL DEFAULT '',
	hypervisor TEXT NOT NULL DEFAULT '',
	arch TEXT NOT NULL DEFAULT '',
	os TEXT NOT NULL DEFAULT '',
	os_version TEXT NOT NULL DEFAULT '',
	comments TEXT NOT NULL DEFAULT '',
	format TEXT NOT NULL DEFAULT '',
	created DATETIME,
	expires DATETIME,
	files TEXT,
	extra TEXT,
	fingerprint TEXT NOT NULL DEFAULT '',
	UNIQUE (list_id, definition_id)
)`,
	`CREATE INDEX image_instances_definition ON image_instances(definition_id)`,
	`CREATE INDEX image_instances_sha512 ON image_instances(sha512)`,
}

// schemaV3: the published catalogs' persistent identity (DESIGN 8: ids,
// created times and versions live here, never in the served tree), the
// last update attempt of each subscription, and monotonic counters for
// /metrics.
var schemaV3 = []string{
	`CREATE TABLE catalogs (
	id INTEGER PRIMARY KEY,
	kind TEXT NOT NULL UNIQUE CHECK (kind <> ''),
	uid TEXT NOT NULL CHECK (uid <> ''),
	created DATETIME NOT NULL,
	version INTEGER NOT NULL CHECK (version >= 0),
	written_version INTEGER NOT NULL DEFAULT 0,
	name TEXT NOT NULL DEFAULT '',
	description TEXT NOT NULL DEFAULT ''
)`,
	`CREATE TABLE catalog_items (
	id INTEGER PRIMARY KEY,
	catalog_id INTEGER NOT NULL REFERENCES catalogs(id) ON DELETE CASCADE,
	image TEXT NOT NULL CHECK (image <> ''),
	uid TEXT NOT NULL UNIQUE CHECK (uid <> ''),
	created DATETIME NOT NULL,
	version INTEGER NOT NULL CHECK (version >= 1),
	name TEXT NOT NULL DEFAULT '',
	description TEXT NOT NULL DEFAULT '',
	type TEXT NOT NULL DEFAULT '',
	folder TEXT NOT NULL DEFAULT '',
	files TEXT NOT NULL DEFAULT '[]',
	present INTEGER NOT NULL DEFAULT 1,
	UNIQUE (catalog_id, image)
)`,
	`ALTER TABLE subscriptions ADD COLUMN last_attempt DATETIME`,
	`ALTER TABLE subscriptions ADD COLUMN last_result INTEGER NOT NULL DEFAULT 0`,
	`ALTER TABLE subscriptions ADD COLUMN last_error TEXT NOT NULL DEFAULT ''`,
	`CREATE TABLE counters (
	name TEXT PRIMARY KEY CHECK (name <> ''),
	value INTEGER NOT NULL DEFAULT 0
)`,
}

// migrate brings the database to len(ms). Each migration runs in its own
// immediate transaction that first re-reads the version, so processes that
// open a new file at the same moment apply each migration once.
func migrate(ctx context.Context, db *gorm.DB, ms []migration) error {
	for i, m := range ms {
		if m.version != i+1 {
			return fmt.Errorf("migration %d (%s) is at position %d", m.version, m.name, i+1)
		}
	}
	db = db.WithContext(ctx)
	// Fast path without the write lock: a read-only command at the
	// current version never waits for a running update.
	if cur, err := schemaVersion(db); err == nil {
		if cur > len(ms) {
			return fmt.Errorf("version %d, this program knows up to %d: upgrade clr: %w", cur, len(ms), ErrSchemaTooNew)
		}
		if cur == len(ms) && cur > 0 {
			return nil
		}
	}
	err := db.Transaction(func(tx *gorm.DB) error {
		var n int64
		if err := tx.Raw(`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'`).Scan(&n).Error; err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		var tables []string
		if err := tx.Raw(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY name`).Scan(&tables).Error; err != nil {
			return err
		}
		if len(tables) > 0 {
			hint := ""
			for _, t := range tables {
				if strings.EqualFold(t, "imageListInstance") {
					hint = " (a vmcatcher database: give clr a database of its own with -d or CLR_RDBMS)"
				}
			}
			return fmt.Errorf("tables %s and no schema_version%s: %w", strings.Join(tables, ", "), hint, ErrForeignSchema)
		}
		return tx.Exec(`CREATE TABLE schema_version (version INTEGER PRIMARY KEY)`).Error
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", mapErr(err))
	}
	for _, m := range ms {
		err := db.Transaction(func(tx *gorm.DB) error {
			cur, err := schemaVersion(tx)
			if err != nil {
				return err
			}
			if cur > len(ms) {
				return fmt.Errorf("version %d, this program knows up to %d: upgrade clr: %w", cur, len(ms), ErrSchemaTooNew)
			}
			if cur >= m.version {
				return nil
			}
			if cur != m.version-1 {
				return fmt.Errorf("schema version %d cannot move to %d", cur, m.version)
			}
			if err := m.up(tx); err != nil {
				return err
			}
			return tx.Exec(`INSERT INTO schema_version (version) VALUES (?)`, m.version).Error
		})
		if err != nil {
			return fmt.Errorf("migrate to version %d (%s): %w", m.version, m.name, mapErr(err))
		}
	}
	if len(ms) == 0 {
		cur, err := schemaVersion(db)
		if err != nil {
			return err
		}
		if cur > 0 {
			return fmt.Errorf("version %d, this program knows up to 0: %w", cur, ErrSchemaTooNew)
		}
	}
	return nil
}

func schemaVersion(db *gorm.DB) (int, error) {
	var v int
	err := db.Raw(`SELECT coalesce(max(version), 0) FROM schema_version`).Scan(&v).Error
	return v, err
}
