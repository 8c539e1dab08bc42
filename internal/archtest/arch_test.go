// Package archtest enforces the package map of DESIGN section 2: who may
// import whom, and which third-party modules each package may use.
package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/clr-suite/clr"

// allowed lists, per package (prefix match on the module-relative path),
// the project packages and third-party module prefixes it may import
// directly. Standard library imports are always allowed.
var allowed = map[string][]string{
	"events":              {},
	"internal/imagelist":  {},
	"internal/trust":      {},
	"internal/fsutil":     {},
	"internal/smime":      {"github.com/smallstep/pkcs7"},
	"internal/publish":    {"internal/imagelist", "internal/smime", "internal/trust", "internal/fsutil", "internal/manifest"},
	"internal/subscriber": {"internal/imagelist", "internal/smime", "internal/trust", "internal/store", "internal/transport", "internal/hooks", "events", "internal/fsutil"},
	"internal/transport":  {"internal/fsutil", "internal/trust"},
	"internal/hooks":      {"events"},
	"internal/manifest":   {"internal/manifest"},
	"internal/library":    {"internal/store", "internal/manifest", "internal/fsutil"},
	"internal/schedule":   {"github.com/robfig/cron/v3"},
	"internal/crl":        {"internal/trust", "internal/fsutil"},
	"internal/serve":      {"golang.org/x/crypto/acme"},
	"internal/ovfgen":     {},
	"internal/vcspcheck":  {},
	"internal/sscheck":    {},
	"internal/watch":      {"github.com/fsnotify/fsnotify"},
	"internal/tools":      {"internal/ovfgen", "internal/vcspcheck", "internal/sscheck"},
	"internal/cache":      {"internal/imagelist", "internal/transport", "internal/fsutil", "events"},
	"internal/server":     {"internal/fsutil", "golang.org/x/crypto/ssh", "golang.org/x/sys/unix"},
	"internal/store":      {"gorm.io/gorm", "gorm.io/driver/sqlite"},
	"internal/testpki":    {},
	"internal/testsshd":   {"golang.org/x/crypto/ssh"},
	"internal/push":       {"internal/publish", "internal/transport", "internal/fsutil"},
	"internal/archtest":   {},
	"internal/cli":        {"internal/", "events", "github.com/urfave/cli/v2", "golang.org/x/term", "golang.org/x/crypto/ssh", "github.com/prometheus/client_golang"},
	"cmd/":                {"internal/cli"},
}

type pkg struct {
	ImportPath string
	Imports    []string
	Standard   bool
}

func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", mod+"/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, mod), "/")
		if rel == "" {
			continue // the root e2e test package
		}
		rules, ok := rulesFor(rel)
		if !ok {
			t.Errorf("package %s has no entry in the package map (internal/archtest)", rel)
			continue
		}
		seen++
		for _, imp := range p.Imports {
			if isStd(imp) {
				continue
			}
			target := strings.TrimPrefix(strings.TrimPrefix(imp, mod), "/")
			if target == rel {
				continue
			}
			if !permitted(rules, target) {
				t.Errorf("%s imports %s, which the package map does not allow", rel, imp)
			}
		}
	}
	if seen < 5 {
		t.Fatalf("only %d packages checked", seen)
	}
}

func rulesFor(rel string) ([]string, bool) {
	best, found := "", false
	for prefix := range allowed {
		if (rel == prefix || strings.HasPrefix(rel, strings.TrimSuffix(prefix, "/")+"/")) && len(prefix) > len(best) {
			best, found = prefix, true
		}
	}
	return allowed[best], found
}

func permitted(rules []string, target string) bool {
	for _, r := range rules {
		if target == r || strings.HasPrefix(target, strings.TrimSuffix(r, "/")+"/") || (strings.HasSuffix(r, "/") && strings.HasPrefix(target, r)) {
			return true
		}
	}
	return false
}

func isStd(imp string) bool {
	first, _, _ := strings.Cut(imp, "/")
	return !strings.Contains(first, ".")
}
