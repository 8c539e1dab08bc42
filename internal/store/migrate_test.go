package store

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"gorm.io/gorm"
)

func versions(t *testing.T, s *Store) []int {
	t.Helper()
	var vs []int
	if err := s.db.Raw("SELECT version FROM schema_version ORDER BY version").Scan(&vs).Error; err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestMigrations(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "clr.db")

	// An empty file migrates to the current version.
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if got := versions(t, s); len(got) != SchemaVersion() || got[len(got)-1] != SchemaVersion() {
		t.Fatalf("schema_version rows %v, want 1..%d", got, SchemaVersion())
	}
	mustSub(t, s, "sub-1", NewImagesAccept)
	before := dump(t, s)
	s.Close()

	// Reopening is a no-op.
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if after := dump(t, s); after != before {
		t.Fatalf("reopen changed the database:\n%s\nvs\n%s", before, after)
	}

	// A fake v2 applies on top, in its own transaction, once.
	runs := 0
	v2 := append(append([]migration(nil), migrations...), migration{
		version: len(migrations) + 1,
		name:    "test: subscription notes",
		up: func(tx *gorm.DB) error {
			runs++
			return tx.Exec(`ALTER TABLE subscriptions ADD COLUMN notes TEXT NOT NULL DEFAULT 'none'`).Error
		},
	})
	for range 2 {
		if err := migrate(ctx, s.db, v2); err != nil {
			t.Fatal(err)
		}
	}
	if runs != 1 {
		t.Errorf("v2 ran %d times, want 1", runs)
	}
	if got := versions(t, s); got[len(got)-1] != len(v2) {
		t.Errorf("schema_version rows %v, want up to %d", got, len(v2))
	}
	var notes string
	s.db.Raw("SELECT notes FROM subscriptions WHERE identifier = 'sub-1'").Scan(&notes)
	if notes != "none" {
		t.Errorf("v2 column = %q", notes)
	}
	// The data survived and the current code still reads it.
	if _, err := s.GetSubscription(ctx, "sub-1"); err != nil {
		t.Error(err)
	}
	s.Close()

	// This program does not know v2: the database is too new.
	_, err = Open(ctx, path)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open of a newer database: %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), "upgrade clr") {
		t.Errorf("error %q does not say what to do", err)
	}
}

func TestMigrationFailureRollsBack(t *testing.T) {
	ctx := context.Background()
	s, _ := openTemp(t)
	before := dump(t, s)
	bad := append(append([]migration(nil), migrations...), migration{
		version: len(migrations) + 1,
		name:    "test: fails half way",
		up: func(tx *gorm.DB) error {
			if err := tx.Exec(`CREATE TABLE half (x INTEGER)`).Error; err != nil {
				return err
			}
			return tx.Exec(`THIS IS NOT SQL`).Error
		},
	})
	if err := migrate(ctx, s.db, bad); err == nil {
		t.Fatal("broken migration succeeded")
	}
	if after := dump(t, s); after != before {
		t.Errorf("failed migration left changes:\n%s", after)
	}
}

func TestMigrationsAreOrdered(t *testing.T) {
	for i, m := range migrations {
		if m.version != i+1 || m.name == "" || m.up == nil {
			t.Errorf("migration at %d: version %d name %q", i, m.version, m.name)
		}
	}
	if err := migrate(context.Background(), nil, []migration{{version: 2, name: "gap"}}); err == nil {
		t.Error("a gap in versions was accepted")
	}
}

func TestForeignSchemaRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "vmcatcher.db")
	s, err := open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	// vmcatcher's tables (a subset).
	for _, q := range []string{
		`CREATE TABLE endorser (id INTEGER PRIMARY KEY, identifier VARCHAR(50) UNIQUE NOT NULL)`,
		`CREATE TABLE "imageListInstance" (id INTEGER PRIMARY KEY, data BLOB NOT NULL)`,
	} {
		if err := s.db.Exec(q).Error; err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	_, err = Open(ctx, "sqlite:///"+path)
	if !errors.Is(err, ErrForeignSchema) || !strings.Contains(err.Error(), "vmcatcher") {
		t.Fatalf("Open of a vmcatcher database: %v", err)
	}
	s, _ = open(ctx, path)
	defer s.Close()
	var n int
	s.db.Raw(`SELECT count(*) FROM sqlite_master WHERE type = 'table'`).Scan(&n)
	if n != 2 {
		t.Errorf("the foreign database now has %d tables, want it untouched (2)", n)
	}
}

// TestModelsMatchSchema checks every gorm model field against a column of
// the migrated schema.
func TestModelsMatchSchema(t *testing.T) {
	s, _ := openTemp(t)
	m := s.db.Migrator()
	for _, model := range allModels {
		stmt := &gorm.Statement{DB: s.db}
		if err := stmt.Parse(model); err != nil {
			t.Fatal(err)
		}
		if !m.HasTable(model) {
			t.Errorf("no table %s", stmt.Schema.Table)
			continue
		}
		cols, err := m.ColumnTypes(model)
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, c := range cols {
			have[c.Name()] = true
		}
		for _, f := range stmt.Schema.Fields {
			if f.DBName != "" && !have[f.DBName] {
				t.Errorf("%s.%s: no such column", stmt.Schema.Table, f.DBName)
			}
			delete(have, f.DBName)
		}
		for c := range have {
			t.Errorf("%s.%s: column without a model field", stmt.Schema.Table, c)
		}
	}
}
