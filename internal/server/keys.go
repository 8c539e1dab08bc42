package server

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/ssh"

	"github.com/clr-suite/clr/internal/fsutil"
)

// LoadOrCreateHostKey reads the ed25519 host key at path, or generates one
// there (mode 0600, OpenSSH format) when the file does not exist. created
// reports a new key. The key is persistent so clients can pin it.
func LoadOrCreateHostKey(path string) (signer ssh.Signer, created bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, false, fmt.Errorf("host key: %w", err)
		}
		block, err := ssh.MarshalPrivateKey(priv, "clr-server host key")
		if err != nil {
			return nil, false, fmt.Errorf("host key: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, false, fmt.Errorf("host key: %w", err)
		}
		if err := fsutil.WriteAtomic(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, false, fmt.Errorf("host key: %w", err)
		}
		signer, err := ssh.NewSignerFromKey(priv)
		return signer, true, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("host key: %w", err)
	}
	signer, err = ssh.ParsePrivateKey(data)
	if err != nil {
		return nil, false, fmt.Errorf("host key %s: %w", path, err)
	}
	return signer, false, nil
}

// Site is one authorized key: the key comment names the site in logs.
type Site struct {
	Name        string // the authorized_keys comment ("" -> the fingerprint)
	Fingerprint string // SHA256:...
}

// Keys is a reloadable set of authorized keys, safe for concurrent use:
// Reload swaps the whole set at once, and sessions already authenticated
// keep running.
type Keys struct {
	path string
	set  atomic.Pointer[map[string]Site]
}

// LoadKeys reads an OpenSSH authorized_keys file. The options restrict
// and no-* are accepted (clr-server applies them to every key anyway);
// any other option (from=, command=, expiry-time=...) refuses the file,
// since ignoring it would grant more than the operator wrote.
func LoadKeys(path string) (*Keys, error) {
	k := &Keys{path: path}
	if _, err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// Reload re-reads the file; on error the current set stays in force.
// It returns the number of keys loaded.
func (k *Keys) Reload() (int, error) {
	data, err := fsutil.ReadFileCapped(k.path, 4<<20)
	if err != nil {
		return 0, fmt.Errorf("authorized keys: %w", err)
	}
	set, err := parseAuthorizedKeys(data)
	if err != nil {
		return 0, fmt.Errorf("authorized keys %s: %w", k.path, err)
	}
	k.set.Store(&set)
	return len(set), nil
}

func parseAuthorizedKeys(data []byte) (map[string]Site, error) {
	set := map[string]Site{}
	line := 0
	for len(data) > 0 {
		var cur []byte
		cur, data, _ = bytes.Cut(data, []byte("\n"))
		line++
		cur = bytes.TrimSpace(cur)
		if len(cur) == 0 || cur[0] == '#' {
			continue
		}
		key, comment, options, _, err := ssh.ParseAuthorizedKey(cur)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		for _, o := range options {
			// Restrictions are what clr-server applies anyway; options
			// that would narrow access (from=, expiry-time=, a per-site
			// command=) cannot be honoured, so refuse rather than widen.
			if o != "restrict" && !strings.HasPrefix(o, "no-") {
				return nil, fmt.Errorf("line %d: option %q is not supported (clr-server allows only restrict and no-* options; give each site with other rules its own server)", line, o)
			}
		}
		fp := ssh.FingerprintSHA256(key)
		if comment == "" {
			comment = fp
		}
		set[string(key.Marshal())] = Site{Name: comment, Fingerprint: fp}
	}
	return set, nil
}

// Lookup returns the site of an authorized key.
func (k *Keys) Lookup(key ssh.PublicKey) (Site, bool) {
	set := k.set.Load()
	if set == nil {
		return Site{}, false
	}
	s, ok := (*set)[string(key.Marshal())]
	return s, ok
}
