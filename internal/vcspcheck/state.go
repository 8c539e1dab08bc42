package vcspcheck

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
)

// snapshot is what StatePath holds: the served library as the last passing
// run saw it.
type snapshot struct {
	LibraryID      string     `json:"libraryId"`
	LibraryVersion string     `json:"libraryVersion"`
	Items          []snapItem `json:"items"`
}

type snapItem struct {
	ID      string     `json:"id"`
	Name    string     `json:"name"`
	Type    string     `json:"type"`
	Version string     `json:"version"`
	Files   []snapFile `json:"files"`
}

type snapFile struct {
	Name string `json:"name"`
	Size int64  `json:"size"`
	Etag string `json:"etag"`
}

func takeSnapshot(lib *library) snapshot {
	s := snapshot{LibraryID: lib.id, LibraryVersion: lib.version, Items: []snapItem{}}
	for _, it := range lib.items {
		si := snapItem{ID: it.id, Name: it.name, Type: it.typ, Version: it.version, Files: []snapFile{}}
		for _, fl := range it.files {
			si.Files = append(si.Files, snapFile{Name: fl.name, Size: fl.size, Etag: fl.etag})
		}
		sort.Slice(si.Files, func(i, j int) bool { return si.Files[i].Name < si.Files[j].Name })
		s.Items = append(s.Items, si)
	}
	sort.Slice(s.Items, func(i, j int) bool { return s.Items[i].Name < s.Items[j].Name })
	return s
}

// content is what a subscriber's version check must notice: the type and
// the file set with sizes and etags.
func (s snapItem) sameContent(o snapItem) bool {
	return s.Type == o.Type && slices.Equal(s.Files, o.Files)
}

func readSnapshot(path string) (*snapshot, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", path, err)
	}
	var s snapshot
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read state %s: %w", path, err)
	}
	return &s, nil
}

func writeSnapshot(path string, s snapshot) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write state %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, ".vcspcheck-state-*")
	if err != nil {
		return fmt.Errorf("write state %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write state %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write state %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write state %s: %w", path, err)
	}
	return nil
}

// cmpVersion compares two decimal version strings (already validated).
func cmpVersion(a, b string) int {
	x, _ := strconv.ParseInt(a, 10, 64)
	y, _ := strconv.ParseInt(b, 10, 64)
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// checkState compares the served library with the snapshot at path, fills
// the items' State, rep.Removed and rep.StateProblems, and saves the new
// snapshot when no rule was broken.
func checkState(path string, lib *library, rep *Report) error {
	prev, err := readSnapshot(path)
	if err != nil {
		return err
	}
	cur := takeSnapshot(lib)
	rep.StateProblems = append(rep.StateProblems, compareSnapshots(prev, cur, rep)...)
	if len(rep.StateProblems) > 0 {
		return nil
	}
	if err := writeSnapshot(path, cur); err != nil {
		return err
	}
	rep.StateSaved = true
	return nil
}

// compareSnapshots applies the re-sync rules: a subscriber only looks at
// items whose version grew, and only after lib.json's version grew.
func compareSnapshots(prev *snapshot, cur snapshot, rep *Report) []string {
	var problems []string
	setState := func(name, state string) {
		if it := rep.Item(name); it != nil {
			it.State = state
		}
	}
	if prev == nil {
		for _, it := range cur.Items {
			setState(it.Name, "new")
		}
		return nil
	}
	if prev.LibraryID != cur.LibraryID {
		problems = append(problems, fmt.Sprintf("library id changed from %s to %s: subscribers cannot follow a new library id", prev.LibraryID, cur.LibraryID))
	}
	libCmp := cmpVersion(cur.LibraryVersion, prev.LibraryVersion)
	if libCmp < 0 {
		problems = append(problems, fmt.Sprintf("lib.json version went down from %s to %s", prev.LibraryVersion, cur.LibraryVersion))
	}

	byID, byName := map[string]*snapItem{}, map[string]*snapItem{}
	for i := range prev.Items {
		byID[prev.Items[i].ID] = &prev.Items[i]
		byName[prev.Items[i].Name] = &prev.Items[i]
	}
	matched := map[string]bool{} // previous ids
	changed := false
	for _, it := range cur.Items {
		old, ok := byID[it.ID]
		if !ok {
			if o, ok := byName[it.Name]; ok && !matched[o.ID] {
				matched[o.ID] = true
				problems = append(problems, fmt.Sprintf("item %q: id changed from %s to %s: subscribers see a new item and delete the old one", it.Name, o.ID, it.ID))
				setState(it.Name, "new (id changed from "+o.ID+")")
			} else {
				setState(it.Name, "new")
			}
			changed = true
			continue
		}
		matched[old.ID] = true
		vc := cmpVersion(it.Version, old.Version)
		switch {
		case vc < 0:
			problems = append(problems, fmt.Sprintf("item %q: version went down from %s to %s", it.Name, old.Version, it.Version))
			changed = true
		case vc == 0 && !it.sameContent(*old):
			problems = append(problems, fmt.Sprintf("item %q: files changed but version not bumped (%s)", it.Name, it.Version))
			changed = true
		case vc == 0 && it.Name != old.Name:
			problems = append(problems, fmt.Sprintf("item %q: renamed from %q but version not bumped (%s)", it.Name, old.Name, it.Version))
			changed = true
		}
		switch {
		case vc == 0 && (!it.sameContent(*old) || it.Name != old.Name):
			setState(it.Name, "changed, version not bumped")
		case vc == 0:
			setState(it.Name, "unchanged")
		default:
			setState(it.Name, fmt.Sprintf("version %s -> %s", old.Version, it.Version))
			changed = true
		}
	}
	for _, old := range prev.Items {
		if !matched[old.ID] {
			rep.Removed = append(rep.Removed, old.Name)
			changed = true
		}
	}
	if changed && libCmp <= 0 {
		problems = append(problems, fmt.Sprintf("items changed but lib.json version not bumped (%s): subscribers stop at lib.json", cur.LibraryVersion))
	}
	return problems
}
