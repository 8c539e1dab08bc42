package publish

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/clr-suite/clr/internal/fsutil"
)

// HashCache remembers the SHA-512 of library files by path, keyed on the
// file's size, modification and change times (ns), inode and device. It is safe for
// concurrent use.
//
// An entry is trusted only if the file's modification time is more than
// [RacyWindow] older than the moment the entry was hashed: a file written
// in the same instant it was hashed could change again without its mtime
// moving (the "racily clean" problem git also guards against).
type HashCache struct {
	mu      sync.Mutex
	path    string
	Entries map[string]cacheEntry `json:"entries"`
	dirty   bool
}

// RacyWindow is how much older than its hashing time a file's mtime must
// be for the cached digest to be trusted.
const RacyWindow = 2 * time.Second

type cacheEntry struct {
	Size     int64  `json:"size"`
	Mtime    int64  `json:"mtime_ns"`
	Ctime    int64  `json:"ctime_ns"`
	Ino      uint64 `json:"ino"`
	Dev      uint64 `json:"dev"`
	SHA512   string `json:"sha512"`
	HashedAt int64  `json:"hashed_at_ns"`
}

const cacheVersion = 2 // 2: ctime added

type cacheFile struct {
	Version int                   `json:"version"`
	Entries map[string]cacheEntry `json:"entries"`
}

// LoadHashCache reads the cache at path; a missing, unreadable or foreign
// file yields an empty cache (it only costs re-hashing).
func LoadHashCache(path string) (*HashCache, error) {
	c := &HashCache{path: path, Entries: map[string]cacheEntry{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("hash cache %s: %w", path, err)
	}
	var f cacheFile
	if json.Unmarshal(data, &f) != nil || f.Version != cacheVersion || f.Entries == nil {
		return c, nil
	}
	c.Entries = f.Entries
	return c, nil
}

func (c *HashCache) lookup(rel string, id fileID) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.Entries[rel]
	if !ok || e.Size != id.Size || e.Mtime != id.Mtime || e.Ctime != id.Ctime || e.Ino != id.Ino || e.Dev != id.Dev || len(e.SHA512) != 128 {
		return "", false
	}
	if e.HashedAt-e.Mtime <= int64(RacyWindow) {
		return "", false
	}
	return e.SHA512, true
}

func (c *HashCache) store(rel string, id fileID, sum string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Entries[rel] = cacheEntry{Size: id.Size, Mtime: id.Mtime, Ctime: id.Ctime, Ino: id.Ino, Dev: id.Dev, SHA512: sum, HashedAt: now.UnixNano()}
	c.dirty = true
}

// Prune drops entries for files not in keep.
func (c *HashCache) Prune(keep []Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	live := map[string]bool{}
	for _, e := range keep {
		for rel := range e.fi {
			live[rel] = true
		}
	}
	for rel := range c.Entries {
		if !live[rel] {
			delete(c.Entries, rel)
			c.dirty = true
		}
	}
}

// Save writes the cache atomically if it changed.
func (c *HashCache) Save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirty {
		return nil
	}
	data, err := json.Marshal(cacheFile{Version: cacheVersion, Entries: c.Entries})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o755); err != nil {
		return fmt.Errorf("hash cache: %w", err)
	}
	if err := fsutil.WriteAtomic(c.path, data, 0o600); err != nil {
		return fmt.Errorf("hash cache: %w", err)
	}
	c.dirty = false
	return nil
}
