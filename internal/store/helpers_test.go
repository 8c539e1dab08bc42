package store

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain doubles as the helper process of the multi-process tests: the
// test binary re-executes itself with CLR_STORE_HELPER set (see
// concurrency_test.go) and never reaches m.Run then.
func TestMain(m *testing.M) {
	if role := os.Getenv(helperEnv); role != "" {
		os.Exit(runHelper(role))
	}
	os.Exit(m.Run())
}

// t0 is the tests' fixed clock.
var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// cmpVersion is a stand-in for imagelist.Compare: integers numerically,
// anything else bytewise.
func cmpVersion(a, b string) int {
	x, errA := strconv.Atoi(a)
	y, errB := strconv.Atoi(b)
	if errA == nil && errB == nil {
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	}
	return strings.Compare(a, b)
}

func opts(mode UpdateMode) AcceptOptions {
	return AcceptOptions{NewImages: mode, CompareVersion: cmpVersion}
}

func openTemp(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "clr.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// list makes a list instance of version v created c hours after t0.
func list(v string, hours int) ListInstance {
	created := t0.Add(time.Duration(hours) * time.Hour)
	return ListInstance{
		Raw:      []byte("signed list " + v + " " + created.Format(time.RFC3339)),
		Version:  v,
		Created:  created,
		Expires:  created.Add(30 * 24 * time.Hour),
		Imported: created.Add(time.Minute),
		SignerDN: "/DC=org/CN=Signer",
		IssuerDN: "/DC=org/CN=CA",
	}
}

// img makes an image whose SHA-512 and size derive from content.
func img(id, content string) ImageInstance {
	sum := sha512.Sum512([]byte(content))
	h := hex.EncodeToString(sum[:])
	return ImageInstance{
		Identifier: id,
		Title:      "title of " + id,
		URI:        "https://example.org/" + id,
		Size:       int64(len(content)),
		Version:    "1",
		SHA512:     h,
		Hypervisor: "QEMU",
		Arch:       "x86_64",
		OS:         "Linux",
		OSVersion:  "9",
	}
}

func mustSub(t testing.TB, s *Store, uuid string, mode UpdateMode) Subscription {
	t.Helper()
	sub, err := s.CreateSubscription(context.Background(), Subscription{
		UUID: uuid, URL: "https://example.org/" + uuid + "/image.list", Authorised: true, UpdateMode: mode, Updated: t0,
	})
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func mustAccept(t testing.TB, s *Store, sub string, l ListInstance, mode UpdateMode, ims ...ImageInstance) AcceptResult {
	t.Helper()
	res, err := s.AcceptList(context.Background(), sub, l, ims, opts(mode))
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// dump renders every row of every clr table, to compare database states.
func dump(t testing.TB, s *Store) string {
	t.Helper()
	var tables []string
	if err := s.db.Raw(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%' ORDER BY name`).Scan(&tables).Error; err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, tbl := range tables {
		rows, err := s.db.Raw("SELECT * FROM " + tbl + " ORDER BY 1").Rows()
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprintf("%v", vals))
		}
		rows.Close()
		sort.Strings(lines)
		fmt.Fprintf(&b, "%s %v\n%s\n", tbl, cols, strings.Join(lines, "\n"))
	}
	return b.String()
}

func count(t testing.TB, s *Store, q string, args ...any) int {
	t.Helper()
	var n int
	if err := s.db.Raw(q, args...).Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}
