package sscheck

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"math"
	"slices"
)

// keepMeta bounds the metadata files kept in memory to tell a fingerprint
// hashed in the wrong order (root || meta) from a plain wrong one.
const keepMeta = 16 << 20

// dlFile is one item file to download (items sharing a path share it).
type dlFile struct {
	path   string
	size   int64
	sha256 string
	where  string // the first item naming it, for messages
	isMeta bool

	ok    bool   // read whole, not over size, sha256 matched
	state []byte // sha256 state after the content (metadata files)
	data  []byte // the content (small metadata files)
}

type pairKey struct{ meta, root string }

// collectFiles lists every item of every products file read, by path.
// Metadata files come first in the order, so that each root file can be
// hashed once into every sha256(meta || root) it belongs to.
func (c *checker) collectFiles() (map[string]*dlFile, []string) {
	files := map[string]*dlFile{}
	for _, pf := range c.files {
		for _, pname := range sortedKeys(pf.doc.Products) {
			p := pf.doc.Products[pname]
			for _, vname := range sortedKeys(p.Versions) {
				v := p.Versions[vname]
				for _, key := range sortedKeys(v.Items) {
					it := v.Items[key]
					if it.Path == "" || safePath(it.Path) != nil || it.Size == nil || *it.Size < 0 {
						continue // reported by checkItem
					}
					where := fmt.Sprintf("%s: product %q version %q item %q", pf.path, pname, vname, key)
					if f, ok := files[it.Path]; ok {
						if f.size != it.size() || f.sha256 != it.HashSha256 {
							c.errorf("%s: path %q is also item %s with size %d sha256 %s, but this one says size %d sha256 %s",
								where, it.Path, f.where, f.size, f.sha256, it.size(), it.HashSha256)
						}
						continue
					}
					files[it.Path] = &dlFile{path: it.Path, size: it.size(), sha256: it.HashSha256, where: where}
				}
			}
		}
	}
	for _, ims := range c.images {
		for _, im := range ims {
			if f, ok := files[im.MetaPath]; ok {
				f.isMeta = true
			}
		}
	}
	order := sortedKeys(files)
	slices.SortStableFunc(order, func(a, b string) int {
		switch {
		case files[a].isMeta == files[b].isMeta:
			return 0
		case files[a].isMeta:
			return -1
		}
		return 1
	})
	return files, order
}

// downloadAll fetches every item file once, checks its size and sha256,
// recomputes every fingerprint and marks the images Verified.
func (c *checker) downloadAll(ctx context.Context) {
	files, order := c.collectFiles()
	pairs := map[string][]string{} // root path -> metadata paths
	for _, ims := range c.images {
		for _, im := range ims {
			if im.RootPath != "" && !slices.Contains(pairs[im.RootPath], im.MetaPath) {
				pairs[im.RootPath] = append(pairs[im.RootPath], im.MetaPath)
			}
		}
	}
	actual := map[pairKey]string{}   // sha256(meta || root)
	reversed := map[pairKey]string{} // sha256(root || meta)
	for _, p := range order {
		if ctx.Err() != nil {
			return
		}
		c.downloadOne(ctx, files, files[p], pairs[p], actual, reversed)
	}
	for _, ims := range c.images {
		for _, im := range ims {
			c.verify(im, files, actual, reversed)
		}
	}
}

func (c *checker) downloadOne(ctx context.Context, files map[string]*dlFile, f *dlFile, metas []string, actual, reversed map[pairKey]string) {
	fileHash := sha256.New()
	writers := []io.Writer{fileHash}
	type pairHash struct {
		meta string
		h    hash.Hash
	}
	var pairHashes []pairHash
	for _, m := range metas {
		mf := files[m]
		if mf == nil || !mf.ok || mf.state == nil {
			continue // the metadata file failed: reported already
		}
		h := sha256.New()
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(mf.state); err != nil {
			c.errorf("restore sha256 state of %s: %v", m, err)
			continue
		}
		pairHashes = append(pairHashes, pairHash{m, h})
		writers = append(writers, h)
	}
	var rootFirst hash.Hash
	if len(pairHashes) > 0 {
		rootFirst = sha256.New()
		writers = append(writers, rootFirst)
	}
	var buf *bytes.Buffer
	if f.isMeta && f.size <= keepMeta {
		buf = &bytes.Buffer{}
		writers = append(writers, buf)
	}

	rec := File{Path: f.path}
	limit := f.size + 1 // one byte more tells "too long" from "exact"
	if limit < 0 {
		limit = math.MaxInt64
	}
	n, err := c.f.stream(ctx, f.path, limit, io.MultiWriter(writers...))
	rec.Size = n
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		c.errorf("%s: %v: the clients fail to download the image", f.where, err)
		c.rep.Files = append(c.rep.Files, rec)
		logf(c.out, "FILE path=%s FAILED\n", f.path)
		return
	}
	rec.SHA256 = hex.EncodeToString(fileHash.Sum(nil))
	whole := true
	switch {
	case n > f.size:
		whole = false
		c.errorf("%s: size mismatch for %s: more than the %d bytes the index declares", f.where, f.path, f.size)
	case n < f.size:
		c.errorf("%s: size mismatch for %s: got %d bytes, the index declares %d", f.where, f.path, n, f.size)
	}
	if whole && rec.SHA256 != f.sha256 {
		c.errorf("%s: sha256 mismatch for %s: got %s, the index declares %s (the clients fail with \"Hash mismatch\")", f.where, f.path, rec.SHA256, f.sha256)
	}
	f.ok = whole && rec.SHA256 == f.sha256
	rec.OK = f.ok && n == f.size
	c.rep.Files = append(c.rep.Files, rec)
	status := "ok"
	if !rec.OK {
		status = "BAD"
	}
	logf(c.out, "FILE path=%s size=%d sha256=%s %s\n", f.path, n, rec.SHA256, status)
	if !f.ok {
		return
	}
	if f.isMeta {
		state, err := fileHash.(encoding.BinaryMarshaler).MarshalBinary()
		if err != nil {
			c.errorf("save sha256 state of %s: %v", f.path, err)
			f.ok = false
			return
		}
		f.state = state
		if buf != nil {
			f.data = buf.Bytes()
		}
	}
	for _, ph := range pairHashes {
		actual[pairKey{ph.meta, f.path}] = hex.EncodeToString(ph.h.Sum(nil))
	}
	if rootFirst == nil {
		return
	}
	state, err := rootFirst.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return // only a diagnostic is lost
	}
	for _, ph := range pairHashes {
		data := files[ph.meta].data
		if data == nil {
			continue
		}
		h := sha256.New()
		if h.(encoding.BinaryUnmarshaler).UnmarshalBinary(state) != nil {
			continue
		}
		h.Write(data)
		reversed[pairKey{ph.meta, f.path}] = hex.EncodeToString(h.Sum(nil))
	}
}

// verify compares an image's fingerprint with the recomputed one, as the
// clients do after downloading it.
func (c *checker) verify(im *Image, files map[string]*dlFile, actual, reversed map[pairKey]string) {
	meta := files[im.MetaPath]
	if im.RootPath == "" {
		// A unified tarball: the fingerprint is its sha256, checked above.
		im.Verified = meta != nil && meta.ok
		return
	}
	k := pairKey{im.MetaPath, im.RootPath}
	got, ok := actual[k]
	if !ok {
		return // a file failed to download or verify: reported already
	}
	if got == im.Fingerprint {
		im.Verified = true
		return
	}
	fails := `canonical LXD's client fails the download with "Image fingerprint mismatch"`
	if im.Client == ClientIncus {
		fails = `Incus fails the download ("Image fingerprint doesn't match")`
	}
	msg := fmt.Sprintf("%s: product %q version %q %s image: fingerprint mismatch: %s of the metadata item is %s, but sha256(%s || %s) is %s: %s",
		im.Client, im.Product, im.Version, im.RootType, im.FingerprintField, im.Fingerprint, im.MetaPath, im.RootPath, got, fails)
	root := files[im.RootPath]
	switch {
	case reversed[k] == im.Fingerprint:
		msg += "; it is sha256(root || meta): the files were hashed in the wrong order (the lxd-image-server readdir-order bug)"
	case root != nil && im.Fingerprint == root.sha256:
		msg += "; it is the root file's own sha256"
	case meta != nil && im.Fingerprint == meta.sha256:
		msg += "; it is the metadata file's own sha256"
	}
	c.errorf("%s", msg)
}
