package vcspcheck

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"hash"
	"net/url"
	"path"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits and formats.
const (
	maxJSON       = 32 << 20
	maxOVF        = 16 << 20
	maxMF         = 1 << 20
	maxNameLen    = 80
	createdLayout = "2006-01-02T15:04Z"
)

var (
	urnUUID   = regexp.MustCompile(`^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	createdRE = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}Z$`)
	mfLine    = regexp.MustCompile(`^(SHA1|SHA256|SHA512|MD5)\((.+)\)\s*=\s*([0-9a-fA-F]+)$`)
)

var digestAlgs = map[string]func() hash.Hash{
	"MD5":    md5.New,
	"SHA1":   sha1.New,
	"SHA256": sha256.New,
	"SHA512": sha512.New,
}

// library is the validated model the state and vcsim parts work from.
type library struct {
	base    *url.URL
	id      string
	version string
	items   []*item
}

type item struct {
	id, name, typ, version string
	files                  []*file
	ovfDisks               int // Disk elements in the OVF's DiskSection
}

type file struct {
	name   string
	size   int64
	etag   string
	url    *url.URL
	alg    string // from the .mf, if listed
	digest string
}

// mcheck collects problems while walking the manifests.
type mcheck struct {
	ctx  context.Context
	f    *fetcher
	base *url.URL
	rep  *Report
}

func (c *mcheck) errorf(format string, args ...any) {
	c.rep.Problems = append(c.rep.Problems, fmt.Sprintf(format, args...))
}

func (c *mcheck) warnf(format string, args ...any) {
	c.rep.Warnings = append(c.rep.Warnings, fmt.Sprintf(format, args...))
}

// resolve resolves href against lib.json's URL.
func (c *mcheck) resolve(href string) (*url.URL, error) {
	r, err := url.Parse(href)
	if err != nil {
		return nil, fmt.Errorf("href %q: %w", href, err)
	}
	return c.base.ResolveReference(r), nil
}

// getJSON fetches u and decodes a JSON object (numbers kept as json.Number).
func (c *mcheck) getJSON(u string) (map[string]any, error) {
	b, err := c.f.get(c.ctx, u, maxJSON)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %w", u, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%s: trailing data after the JSON value", u)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: top level is %s, want an object", u, kind(v))
	}
	return m, nil
}

func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// str returns m[key] as a string; missing or mistyped fields are reported
// (when required) with where as context.
func (c *mcheck) str(where string, m map[string]any, key string, required bool) (string, bool) {
	v, ok := m[key]
	if !ok {
		if required {
			c.errorf("%s: field %q missing", where, key)
		}
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		c.errorf("%s: field %q is %s, want a string", where, key, kind(v))
		return "", false
	}
	return s, true
}

// decimal checks a version-like field: a string holding a decimal integer
// that fits a Java long.
func (c *mcheck) decimal(where string, m map[string]any, key string, required bool) string {
	s, ok := c.str(where, m, key, required)
	if !ok {
		return ""
	}
	if !isDecimal(s) {
		c.errorf("%s: %s %q is not a decimal integer string", where, key, s)
		return ""
	}
	return s
}

func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}

func (c *mcheck) created(where string, m map[string]any) string {
	s, ok := c.str(where, m, "created", true)
	if !ok {
		return ""
	}
	t, err := time.Parse(createdLayout, s)
	if !createdRE.MatchString(s) || err != nil {
		c.errorf("%s: created %q is not in the UTC format YYYY-MM-DDTHH:MMZ", where, s)
		return s
	}
	if t.After(time.Now().Add(15 * time.Minute)) {
		c.warnf("%s: created %s is in the future (local time written with a Z?)", where, s)
	}
	return s
}

// checkManifest walks lib.json, items.json, every item.json and file.
func checkManifest(ctx context.Context, f *fetcher, base *url.URL, verifySums bool, rep *Report) *library {
	c := &mcheck{ctx: ctx, f: f, base: base, rep: rep}
	lib := &library{base: base}

	lj, err := c.getJSON(base.String())
	if err != nil {
		c.errorf("lib.json: %v", err)
		return lib
	}
	const lw = "lib.json"
	if v, ok := c.str(lw, lj, "vcspVersion", true); ok && v != "2" {
		c.errorf("lib.json: vcspVersion %q, want \"2\"", v)
	}
	if id, ok := c.str(lw, lj, "id", true); ok {
		if !urnUUID.MatchString(id) {
			c.errorf("lib.json: id %q is not urn:uuid:<uuid>", id)
		}
		lib.id = id
	}
	lib.version = c.decimal(lw, lj, "version", true)
	cv := c.decimal(lw, lj, "contentVersion", true)
	name, _ := c.str(lw, lj, "name", true)
	created := c.created(lw, lj)
	rep.Library = Library{ID: lib.id, Name: name, Version: lib.version, ContentVersion: cv, Created: created}
	c.capabilities(lj)
	if msg, ok := c.str(lw, lj, "maintenanceMessage", false); ok && msg != "" {
		c.warnf("lib.json: maintenanceMessage %q is set: subscribers refuse to sync", msg)
	}
	itemsHref, ok := c.str(lw, lj, "itemsHref", true)
	if !ok {
		return lib
	}
	if itemsHref == "" {
		c.errorf("lib.json: itemsHref is empty")
		return lib
	}
	itemsURL, err := c.resolve(itemsHref)
	if err != nil {
		c.errorf("lib.json: itemsHref: %v", err)
		return lib
	}
	ij, err := c.getJSON(itemsURL.String())
	if err != nil {
		c.errorf("items.json: %v", err)
		return lib
	}
	raw, ok := ij["items"]
	if !ok {
		c.errorf("items.json: field \"items\" missing")
		return lib
	}
	list, ok := raw.([]any)
	if !ok {
		c.errorf("items.json: field \"items\" is %s, want an array", kind(raw))
		return lib
	}

	ids, names := map[string]string{}, map[string]bool{}
	for i, v := range list {
		m, ok := v.(map[string]any)
		if !ok {
			c.errorf("items.json: items[%d] is %s, want an object", i, kind(v))
			continue
		}
		it := c.item(i, m, verifySums)
		if it == nil {
			continue
		}
		if it.id != "" {
			if other, dup := ids[it.id]; dup {
				c.errorf("items.json: duplicate item id %s (items %q and %q)", it.id, other, it.name)
			}
			ids[it.id] = it.name
		}
		if it.name != "" {
			if names[it.name] {
				c.errorf("items.json: duplicate item name %q", it.name)
			}
			names[it.name] = true
		}
		lib.items = append(lib.items, it)
		rep.Items = append(rep.Items, itemReport(it))
	}
	return lib
}

func itemReport(it *item) ItemReport {
	ir := ItemReport{ID: it.id, Name: it.name, Type: it.typ, Version: it.version}
	for _, fl := range it.files {
		fr := FileReport{Name: fl.name, Size: fl.size, Etag: fl.etag}
		if fl.url != nil {
			fr.URL = fl.url.Redacted()
		}
		if fl.digest != "" {
			fr.Digest = fl.alg + ":" + fl.digest
		}
		ir.Files = append(ir.Files, fr)
	}
	return ir
}

func (c *mcheck) capabilities(lj map[string]any) {
	v, ok := lj["capabilities"]
	if !ok {
		c.errorf("lib.json: field \"capabilities\" missing")
		return
	}
	caps, ok := v.(map[string]any)
	if !ok {
		c.errorf("lib.json: capabilities is %s, want an object", kind(v))
		return
	}
	for _, k := range []string{"transferIn", "transferOut"} {
		list, ok := caps[k].([]any)
		if !ok {
			c.errorf("lib.json: capabilities.%s is %s, want an array holding \"httpGet\"", k, kind(caps[k]))
			continue
		}
		if !slices.Contains(list, any("httpGet")) {
			c.errorf("lib.json: capabilities.%s lacks \"httpGet\"", k)
		}
	}
}

var itemTypes = []string{TypeOVF, TypeISO, TypeOther}

// item checks one items.json entry, its item.json and its files.
func (c *mcheck) item(i int, m map[string]any, verifySums bool) *item {
	it := &item{}
	where := fmt.Sprintf("items[%d]", i)
	if name, ok := c.str(where, m, "name", true); ok {
		if name == "" {
			c.errorf("%s: name is empty", where)
		} else {
			it.name = name
			where = fmt.Sprintf("item %q", name)
			if utf8.RuneCountInString(name) > maxNameLen {
				c.warnf("%s: name is longer than %d characters", where, maxNameLen)
			}
		}
	}
	if id, ok := c.str(where, m, "id", true); ok {
		if !urnUUID.MatchString(id) {
			c.errorf("%s: id %q is not urn:uuid:<uuid>", where, id)
		}
		it.id = id
	}
	if typ, ok := c.str(where, m, "type", true); ok {
		if !slices.Contains(itemTypes, typ) {
			c.errorf("%s: type %q is not one of %s", where, typ, strings.Join(itemTypes, ", "))
		}
		it.typ = typ
	}
	it.version = c.decimal(where, m, "version", true)
	c.decimal(where, m, "contentVersion", false)
	c.created(where, m)
	c.str(where, m, "description", false)
	if p, ok := m["properties"]; ok {
		if _, ok := p.(map[string]any); !ok {
			c.errorf("%s: properties is %s, want an object", where, kind(p))
		}
	}
	c.typeMetadata(where, m, it)

	if self, ok := c.str(where, m, "selfHref", true); ok {
		c.selfHref(where, self, m)
	}

	rawFiles, ok := m["files"]
	if !ok {
		c.errorf("%s: field \"files\" missing", where)
		return it
	}
	files, ok := rawFiles.([]any)
	if !ok {
		c.errorf("%s: files is %s, want an array", where, kind(rawFiles))
		return it
	}
	seen := map[string]bool{}
	for j, v := range files {
		fm, ok := v.(map[string]any)
		if !ok {
			c.errorf("%s: files[%d] is %s, want an object", where, j, kind(v))
			continue
		}
		fl := c.file(where, j, fm)
		if fl == nil {
			continue
		}
		if seen[fl.name] {
			c.errorf("%s: duplicate file name %q", where, fl.name)
			continue
		}
		seen[fl.name] = true
		it.files = append(it.files, fl)
	}
	c.itemContent(where, it, verifySums)
	return it
}

func (c *mcheck) typeMetadata(where string, m map[string]any, it *item) {
	raw, ok := m["metadata"]
	if !ok {
		return
	}
	list, ok := raw.([]any)
	if !ok {
		c.errorf("%s: metadata is %s, want an array", where, kind(raw))
		return
	}
	for _, v := range list {
		md, ok := v.(map[string]any)
		if !ok || md["key"] != "type-metadata" {
			continue
		}
		val, ok := md["value"].(string)
		if !ok {
			c.errorf("%s: type-metadata value is %s, want a string", where, kind(md["value"]))
			return
		}
		var tm map[string]any
		if err := json.Unmarshal([]byte(val), &tm); err != nil {
			c.errorf("%s: type-metadata value is not valid JSON (%v)", where, err)
			return
		}
		if id, _ := tm["id"].(string); id != it.id {
			c.errorf("%s: type-metadata id %q != item id %q", where, id, it.id)
		}
		if ver, _ := tm["version"].(string); ver != "" && it.version != "" && ver != it.version {
			c.warnf("%s: type-metadata version %q != item version %q", where, ver, it.version)
		}
	}
}

// selfHref fetches the item's own item.json and compares it with the
// items.json entry.
func (c *mcheck) selfHref(where, self string, entry map[string]any) {
	if self == "" {
		c.errorf("%s: selfHref is empty", where)
		return
	}
	u, err := c.resolve(self)
	if err != nil {
		c.errorf("%s: selfHref: %v", where, err)
		return
	}
	own, err := c.getJSON(u.String())
	if err != nil {
		c.errorf("%s: item.json: %v", where, err)
		return
	}
	if reflect.DeepEqual(own, entry) {
		return
	}
	var diff []string
	for k := range entry {
		if !reflect.DeepEqual(entry[k], own[k]) {
			diff = append(diff, k)
		}
	}
	for k := range own {
		if _, ok := entry[k]; !ok {
			diff = append(diff, k)
		}
	}
	sort.Strings(diff)
	c.errorf("%s: item.json (%s) differs from its items.json entry in %s", where, self, strings.Join(diff, ", "))
}

// file checks one files[] entry and what the server says about its size.
func (c *mcheck) file(where string, j int, m map[string]any) *file {
	fl := &file{}
	fw := fmt.Sprintf("%s files[%d]", where, j)
	name, ok := c.str(fw, m, "name", true)
	if !ok {
		return nil
	}
	if name == "" {
		c.errorf("%s: name is empty", fw)
		return nil
	}
	fl.name = name
	fw = fmt.Sprintf("%s file %q", where, name)
	sizeOK := false
	switch v := m["size"].(type) {
	case json.Number:
		n, err := strconv.ParseInt(v.String(), 10, 64)
		if err != nil || n < 0 {
			c.errorf("%s: size %s is not a non-negative integer", fw, v)
			break
		}
		fl.size, sizeOK = n, true
	case nil:
		c.errorf("%s: field \"size\" missing", fw)
	default:
		c.errorf("%s: size is %s, want a JSON integer", fw, kind(v))
	}
	if etag, ok := c.str(fw, m, "etag", true); ok {
		fl.etag = etag
		if !isDecimal(etag) {
			c.errorf("%s: etag %q is not a decimal integer; vCenter parses etags with Long.valueOf (lamw/vmware-scripts#127)", fw, etag)
		}
	}
	hrefs, ok := m["hrefs"].([]any)
	if !ok || len(hrefs) == 0 {
		c.errorf("%s: hrefs is %s, want a non-empty array of strings", fw, kind(m["hrefs"]))
		return fl
	}
	for _, h := range hrefs {
		hs, ok := h.(string)
		if !ok || hs == "" {
			c.errorf("%s: href %v is not a non-empty string", fw, h)
			continue
		}
		u, err := c.resolve(hs)
		if err != nil {
			c.errorf("%s: %v", fw, err)
			continue
		}
		if u.Host != c.base.Host {
			c.warnf("%s: href %s points to another host", fw, hs)
		}
		if fl.url == nil {
			fl.url = u
		}
		n, err := c.f.size(c.ctx, u.String())
		if err != nil {
			c.errorf("%s: %v", fw, err)
			continue
		}
		if sizeOK && n != fl.size {
			c.errorf("%s: manifest size %d but server has %d bytes (%s)", fw, fl.size, n, hs)
		}
	}
	return fl
}

// itemContent checks the item's type against its files, the OVF
// References, the .mf lines (and digests with verifySums) and VMDK headers.
func (c *mcheck) itemContent(where string, it *item, verifySums bool) {
	byName := map[string]*file{}
	var ovfs, isos, mfs []*file
	for _, fl := range it.files {
		byName[fl.name] = fl
		switch strings.ToLower(path.Ext(fl.name)) {
		case ".ovf":
			ovfs = append(ovfs, fl)
		case ".iso":
			isos = append(isos, fl)
		case ".mf":
			mfs = append(mfs, fl)
		case ".ova":
			c.warnf("%s: %s is an OVA; subscribed OVAs do not deploy, serve the OVF and its disks", where, fl.name)
		}
	}
	switch it.typ {
	case TypeOVF:
		if len(ovfs) != 1 {
			c.errorf("%s: type %s needs exactly one .ovf file, has %d", where, TypeOVF, len(ovfs))
		}
	case TypeISO:
		if len(ovfs) > 0 {
			c.warnf("%s: has an .ovf file but type %s", where, it.typ)
		}
		if len(isos) == 0 {
			c.warnf("%s: type %s but no .iso file", where, TypeISO)
		}
	case TypeOther:
		if len(ovfs) > 0 {
			c.warnf("%s: has an .ovf file but type %s", where, it.typ)
		}
	}
	if it.typ == TypeOVF && len(ovfs) == 1 && ovfs[0].url != nil {
		c.ovfRefs(where, it, ovfs[0], byName)
	}
	for _, mf := range mfs {
		if mf.url != nil {
			c.manifestFile(where, mf, byName)
		}
	}
	for _, fl := range it.files {
		if strings.EqualFold(path.Ext(fl.name), ".vmdk") && fl.url != nil {
			c.vmdkHeader(where, it, fl)
		}
	}
	if !verifySums {
		return
	}
	for _, fl := range it.files {
		if fl.digest == "" || fl.url == nil {
			continue
		}
		h := digestAlgs[fl.alg]()
		n, err := c.f.stream(c.ctx, fl.url.String(), h)
		if err != nil {
			c.errorf("%s file %q: %v", where, fl.name, err)
			continue
		}
		if n != fl.size {
			c.errorf("%s file %q: downloaded %d bytes, manifest size %d", where, fl.name, n, fl.size)
		}
		if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, fl.digest) {
			c.errorf("%s: %s digest of %s does not match the .mf (served %s, .mf %s)", where, fl.alg, fl.name, got, fl.digest)
		}
	}
}

type ovfEnvelope struct {
	Files []struct {
		Href string `xml:"href,attr"`
		Size string `xml:"size,attr"`
	} `xml:"References>File"`
	Disks []struct {
		DiskID string `xml:"diskId,attr"`
	} `xml:"DiskSection>Disk"`
}

func (c *mcheck) ovfRefs(where string, it *item, ovf *file, byName map[string]*file) {
	b, err := c.f.get(c.ctx, ovf.url.String(), maxOVF)
	if err != nil {
		c.errorf("%s: %v", where, err)
		return
	}
	var env ovfEnvelope
	if err := xml.Unmarshal(b, &env); err != nil {
		c.errorf("%s: %s does not parse as OVF: %v", where, ovf.name, err)
		return
	}
	it.ovfDisks = len(env.Disks)
	for _, ref := range env.Files {
		fl, ok := byName[ref.Href]
		if !ok {
			c.errorf("%s: OVF references %s, which is not a file of the item", where, ref.Href)
			continue
		}
		if ref.Size == "" {
			c.warnf("%s: OVF reference %s has no ovf:size", where, ref.Href)
			continue
		}
		n, err := strconv.ParseInt(ref.Size, 10, 64)
		if err != nil {
			c.errorf("%s: OVF ovf:size %q of %s is not an integer", where, ref.Size, ref.Href)
			continue
		}
		if n != fl.size {
			c.errorf("%s: OVF says %s is %d bytes, manifest says %d", where, ref.Href, n, fl.size)
		}
	}
}

func (c *mcheck) manifestFile(where string, mf *file, byName map[string]*file) {
	b, err := c.f.get(c.ctx, mf.url.String(), maxMF)
	if err != nil {
		c.errorf("%s: %v", where, err)
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		m := mfLine.FindStringSubmatch(line)
		if m == nil {
			c.errorf("%s: %s line %d %q is not ALG(file)= hex", where, mf.name, ln, line)
			continue
		}
		alg, name, sum := m[1], m[2], m[3]
		if want := digestAlgs[alg]().Size() * 2; len(sum) != want {
			c.errorf("%s: %s line %d: %s digest has %d hex digits, want %d", where, mf.name, ln, alg, len(sum), want)
			continue
		}
		fl, ok := byName[name]
		if !ok {
			c.errorf("%s: %s lists %s, which is not a file of the item", where, mf.name, name)
			continue
		}
		fl.alg, fl.digest = alg, strings.ToLower(sum)
	}
	if err := sc.Err(); err != nil {
		c.errorf("%s: %s: %v", where, mf.name, err)
	}
}

// vmdkHeader checks the sparse header: vcsim and vCenter import only
// streamOptimized disks (magic "KDMV", compressed grains).
func (c *mcheck) vmdkHeader(where string, it *item, fl *file) {
	b, err := c.f.head512(c.ctx, fl.url.String())
	if err != nil {
		c.errorf("%s file %q: %v", where, fl.name, err)
		return
	}
	report := c.warnf
	if it.typ == TypeOVF {
		report = c.errorf // the template cannot be deployed
	}
	if len(b) < 12 || string(b[:4]) != "KDMV" {
		report("%s file %q: not a sparse VMDK (no KDMV magic); only streamOptimized VMDKs import", where, fl.name)
		return
	}
	const compressed, markers = 1 << 16, 1 << 17
	if flags := binary.LittleEndian.Uint32(b[8:]); flags&compressed == 0 || flags&markers == 0 {
		report("%s file %q: sparse VMDK but not streamOptimized (flags %#x); vcsim says \"vmdk: invalid format (must be streamOptimized)\"", where, fl.name, flags)
	}
}
