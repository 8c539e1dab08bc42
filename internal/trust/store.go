package trust

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// maxFileSize caps what Load reads from one file (large CAs publish CRLs of
// several MB; nothing legitimate comes close to this).
const maxFileSize = 64 << 20

var (
	certName = regexp.MustCompile(`^[0-9a-fA-F]{8}\.[0-9]+$`)
	crlName  = regexp.MustCompile(`^[0-9a-fA-F]{8}\.r[0-9]+$`)
)

// CA is one trust anchor or subordinate CA of a Store.
type CA struct {
	Cert    *x509.Certificate
	File    string // file it was first read from
	Subject string // one-line DN (Oneline)
	// CRL is the freshest CRL (latest ThisUpdate, then highest number) that
	// names this CA as issuer and carries its signature, whatever its
	// ThisUpdate/NextUpdate; nil if there is none.
	CRL     *x509.RevocationList
	CRLFile string
	// HasPolicy: a signing_policy or namespaces file constrains what this
	// CA may sign (also true when such a file exists but could not be
	// parsed: then the CA signs nothing).
	HasPolicy bool
}

// Store is a loaded CA directory. It is immutable and safe for concurrent
// use.
type Store struct {
	dir      string
	cas      []CA
	fileOf   map[string]string // raw certificate -> file
	roots    *x509.CertPool
	subCAs   []*x509.Certificate // CAs of the directory that are not self-signed
	crls     []crlEntry
	rules    map[string][]rule   // dnKey(CA one-line DN) -> rules
	broken   map[string][]string // dnKey(CA one-line DN) -> unparsable policy files
	problems []string
}

type crlEntry struct {
	rl   *x509.RevocationList
	file string
}

// Dir returns the directory the Store was loaded from.
func (s *Store) Dir() string { return s.dir }

// Problems lists the files Load skipped or only partly used, one line each
// ("<file>: <reason>"), in directory order.
func (s *Store) Problems() []string { return append([]string(nil), s.problems...) }

// CAs returns the CA certificates of the directory in file-name order.
func (s *Store) CAs() []CA { return append([]CA(nil), s.cas...) }

// Load reads a CA directory in the IGTF/OpenSSL layout:
//
//   - certificates from `<8 hex>.<N>` and `*.pem` files (PEM, possibly
//     several blocks, symlinks followed; DER accepted too); only
//     certificates with CA basic constraints are kept, duplicates (same
//     bytes) once;
//   - CRLs from `<8 hex>.r<N>` files (PEM or DER);
//   - namespace policies from `*.signing_policy` and `*.namespaces`.
//
// Other files (.info, .crl_url, ...) are ignored. A file that cannot be read
// or parsed is skipped and reported by Problems; only a directory without a
// single usable CA certificate is an error (wrapping ErrNoCAs).
func Load(dir string) (*Store, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("trust directory: %w", err)
	}
	s := &Store{
		dir:    dir,
		fileOf: map[string]string{},
		roots:  x509.NewCertPool(),
		rules:  map[string][]rule{},
		broken: map[string][]string{},
	}
	type policyFile struct {
		hash  string
		rules []rule
	}
	var (
		byRaw        = map[string]int{}   // raw cert -> index in s.cas
		hashCAs      = map[string][]int{} // "<hash>" of a `<hash>.N` file -> CAs in it
		policies     []policyFile
		brokenHashes = map[string][]string{}
	)
	for _, e := range entries {
		name := e.Name()
		kind := ""
		switch {
		case certName.MatchString(name) || strings.HasSuffix(name, ".pem"):
			kind = "cert"
		case crlName.MatchString(name):
			kind = "crl"
		case strings.HasSuffix(name, ".signing_policy"):
			kind = "signing_policy"
		case strings.HasSuffix(name, ".namespaces"):
			kind = "namespaces"
		default:
			continue
		}
		path := filepath.Join(dir, name)
		data, err := readFile(path)
		if err != nil {
			s.problem(path, err.Error())
			if kind == "signing_policy" || kind == "namespaces" {
				if h := policyFileHash(name); h != "" {
					brokenHashes[h] = append(brokenHashes[h], path+": "+err.Error())
				}
			}
			continue
		}
		switch kind {
		case "cert":
			certs, err := parseCerts(data)
			if errors.Is(err, errNoCert) && bytes.Contains(data, []byte("-----BEGIN X509 CRL")) {
				continue // a PEM CRL named *.pem: CRLs count from <hash>.rN names only
			}
			if err != nil {
				s.problem(path, err.Error())
			}
			for _, c := range certs {
				if !c.BasicConstraintsValid || !c.IsCA {
					s.problem(path, fmt.Sprintf("certificate %q is not a CA certificate (ignored)", onelineOr(c.RawSubject)))
					continue
				}
				idx, dup := byRaw[string(c.Raw)]
				if !dup {
					idx = len(s.cas)
					byRaw[string(c.Raw)] = idx
					s.cas = append(s.cas, CA{Cert: c, File: path, Subject: onelineOr(c.RawSubject)})
					s.fileOf[string(c.Raw)] = path
				}
				if certName.MatchString(name) {
					h := strings.ToLower(name[:8])
					hashCAs[h] = appendUnique(hashCAs[h], idx)
				}
			}
		case "crl":
			rls, err := parseCRLs(data)
			if err != nil {
				s.problem(path, err.Error())
			}
			for _, rl := range rls {
				if isDeltaCRL(rl) {
					// A delta CRL lists only changes since its base CRL;
					// taking it for the freshest full CRL would miss
					// revocations.
					s.problem(path, "delta CRL (not supported, ignored)")
					continue
				}
				s.crls = append(s.crls, crlEntry{rl: rl, file: path})
			}
		case "signing_policy", "namespaces":
			data = trimBOM(data)
			parse := parseSigningPolicy
			if kind == "namespaces" {
				parse = parseNamespaces
			}
			rules, err := parse(data, path)
			h := policyFileHash(name)
			if err != nil {
				s.problems = append(s.problems, err.Error())
				if h != "" {
					brokenHashes[h] = append(brokenHashes[h], err.Error())
				}
				continue
			}
			policies = append(policies, policyFile{hash: h, rules: rules})
		}
	}
	if len(s.cas) == 0 {
		if len(s.problems) > 0 {
			return nil, fmt.Errorf("trust directory %s: %w (%d problem(s), first: %s)", dir, ErrNoCAs, len(s.problems), s.problems[0])
		}
		return nil, fmt.Errorf("trust directory %s: %w", dir, ErrNoCAs)
	}
	for _, ca := range s.cas {
		s.roots.AddCert(ca.Cert)
		if !selfSigned(ca.Cert) {
			s.subCAs = append(s.subCAs, ca.Cert)
		}
	}

	// Namespace rules, keyed by CA name; SELF and broken files by hash.
	seen := map[string]bool{}
	add := func(r rule) {
		key := dnKey(r.issuer)
		id := fmt.Sprintf("%s\x00%t\x00%s", key, r.permit, r.pattern)
		if seen[id] {
			return // the same statement through a symlink or alias file
		}
		seen[id] = true
		s.rules[key] = append(s.rules[key], r)
	}
	for _, pf := range policies {
		for _, r := range pf.rules {
			if !r.self {
				add(r)
				continue
			}
			if len(hashCAs[pf.hash]) == 0 {
				s.problem(r.file, fmt.Sprintf("line %d: TO Issuer SELF, but no CA certificate file %s.N (rule ignored)", r.line, pf.hash))
				continue
			}
			for _, idx := range hashCAs[pf.hash] {
				r.issuer = s.cas[idx].Subject
				add(r)
			}
		}
	}
	hashes := make([]string, 0, len(brokenHashes))
	for h := range brokenHashes {
		hashes = append(hashes, h)
	}
	sort.Strings(hashes)
	for _, h := range hashes {
		for _, idx := range hashCAs[h] {
			key := dnKey(s.cas[idx].Subject)
			s.broken[key] = append(s.broken[key], brokenHashes[h]...)
		}
	}

	for i := range s.cas {
		ca := &s.cas[i]
		ca.CRL, ca.CRLFile = s.freshestCRL(ca.Cert, time.Time{}) // no reference time: the latest
		key := dnKey(ca.Subject)
		ca.HasPolicy = len(s.rules[key]) > 0 || len(s.broken[key]) > 0
	}
	// A CRL that names a CA of the directory but fails that CA's signature
	// check is never used: say so, it is either corrupt or a forgery.
	for _, ce := range s.crls {
		named, signed := false, false
		for _, ca := range s.cas {
			if bytes.Equal(ce.rl.RawIssuer, ca.Cert.RawSubject) {
				named = true
				if ce.rl.CheckSignatureFrom(ca.Cert) == nil {
					signed = true
					break
				}
			}
		}
		if named && !signed {
			s.problem(ce.file, fmt.Sprintf("CRL issuer %q is a CA of this directory, but no CA of that name signed it (ignored)", onelineOr(ce.rl.RawIssuer)))
		}
	}
	return s, nil
}

func (s *Store) problem(file, msg string) {
	s.problems = append(s.problems, file+": "+msg)
}

func appendUnique(list []int, v int) []int {
	for _, x := range list {
		if x == v {
			return list
		}
	}
	return append(list, v)
}

// readFile reads a regular file (following symlinks) up to maxFileSize.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	return data, nil
}

var errNoCert = errors.New("no certificate (neither PEM CERTIFICATE blocks nor DER)")

// parseCerts reads PEM CERTIFICATE blocks, or one DER certificate. Blocks
// that do not parse are reported in the error; the good ones are returned.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	return parseBlocks(data, "CERTIFICATE", x509.ParseCertificate, errNoCert)
}

// parseCRLs reads PEM "X509 CRL" blocks, or one DER CRL.
func parseCRLs(data []byte) ([]*x509.RevocationList, error) {
	return parseBlocks(data, "X509 CRL", x509.ParseRevocationList, errors.New("no CRL (neither PEM X509 CRL blocks nor DER)"))
}

// parseBlocks parses every PEM block of blockType with parse or, when the
// data holds no such block, the whole data as one DER object (errNone if
// that fails too).
func parseBlocks[T any](data []byte, blockType string, parse func([]byte) (T, error), errNone error) ([]T, error) {
	var (
		out   []T
		errs  []string
		found bool
	)
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != blockType {
			continue
		}
		found = true
		v, err := parse(block.Bytes)
		if err != nil {
			errs = append(errs, fmt.Sprintf("PEM block %d: %v", n, err))
			continue
		}
		out = append(out, v)
	}
	if !found {
		v, err := parse(data)
		if err != nil {
			return nil, errNone
		}
		return []T{v}, nil
	}
	if len(errs) > 0 {
		return out, errors.New(strings.Join(errs, "; "))
	}
	return out, nil
}

var oidDeltaCRLIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}

func isDeltaCRL(rl *x509.RevocationList) bool {
	for _, e := range rl.Extensions {
		if e.Id.Equal(oidDeltaCRLIndicator) {
			return true
		}
	}
	return false
}

func selfSigned(c *x509.Certificate) bool { return bytes.Equal(c.RawSubject, c.RawIssuer) }

// onelineOr renders a name, falling back to a hex dump for names Oneline
// refuses (crypto/x509 does not parse such names anyway).
func onelineOr(raw []byte) string {
	s, err := Oneline(raw)
	if err != nil {
		return fmt.Sprintf("<unprintable name %x>", raw)
	}
	return s
}

// freshestCRL returns the CRL of issuer with the latest ThisUpdate (then the
// highest CRL number) among those that name issuer and carry its signature.
// CRLs issued at or before the reference time are preferred: a CRL from the
// future (a clock difference, or one fetched early) must not hide a current
// one. Only when every CRL is from the future is one of those returned, so
// the caller reports it.
func (s *Store) freshestCRL(issuer *x509.Certificate, at time.Time) (*x509.RevocationList, string) {
	var (
		best     *x509.RevocationList
		bestFile string
	)
	current := func(rl *x509.RevocationList) bool { return !rl.ThisUpdate.After(at) }
	for _, ce := range s.crls {
		rl := ce.rl
		if !bytes.Equal(rl.RawIssuer, issuer.RawSubject) || rl.CheckSignatureFrom(issuer) != nil {
			continue
		}
		switch {
		case best == nil,
			current(rl) && !current(best),
			current(rl) == current(best) && (rl.ThisUpdate.After(best.ThisUpdate) ||
				rl.ThisUpdate.Equal(best.ThisUpdate) && numberGreater(rl, best)):
			best, bestFile = rl, ce.file
		}
	}
	return best, bestFile
}

func numberGreater(a, b *x509.RevocationList) bool {
	if a.Number == nil {
		return false
	}
	if b.Number == nil {
		return true
	}
	return a.Number.Cmp(b.Number) > 0
}
