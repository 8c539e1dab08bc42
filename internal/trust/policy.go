package trust

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// rule is one namespace statement: the CA it constrains and a subject
// pattern that CA may (permit) or may not (deny) sign.
type rule struct {
	issuer  string // CA DN as written in the file; "" when self
	self    bool   // namespaces "TO Issuer SELF": the CA whose hash names the file
	permit  bool
	pattern string // as written: a glob (signing_policy) or a regexp (namespaces)
	re      *regexp.Regexp
	file    string
	line    int
}

func (r rule) String() string {
	verb := "PERMIT"
	if !r.permit {
		verb = "DENY"
	}
	return fmt.Sprintf("%s:%d %s %q", r.file, r.line, verb, r.pattern)
}

// labelAliases maps attribute labels that policy files use but OpenSSL 3
// does not print to the label it prints (lower-case keys), as canl-java does.
var labelAliases = map[string]string{
	"e":      "emailAddress",
	"email":  "emailAddress",
	"userid": "UID",
}

// normalizeLabels rewrites "/Email=" and friends to OpenSSL's labels so that
// old policy files written for "/Email=" still match "/emailAddress=".
func normalizeLabels(s string) string {
	if !strings.Contains(s, "/") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		if s[i] == '/' {
			j := i + 1
			for j < len(s) && s[j] != '=' && s[j] != '/' {
				j++
			}
			if j < len(s) && s[j] == '=' {
				if alias, ok := labelAliases[strings.ToLower(s[i+1:j])]; ok {
					b.WriteByte('/')
					b.WriteString(alias)
					i = j
					continue
				}
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

// dnKey is the form CA names are compared in: labels normalised, case
// folded.
func dnKey(dn string) string { return strings.ToLower(normalizeLabels(dn)) }

// splitLines splits on LF, dropping a CR before it.
func splitLines(data []byte) []string {
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\r")
	}
	return lines
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// cutField returns the first blank-separated field of s and the rest, with
// leading blanks removed from the rest.
func cutField(s string) (string, string) {
	s = strings.TrimLeft(s, " \t")
	i := 0
	for i < len(s) && !isBlank(s[i]) {
		i++
	}
	return s[:i], strings.TrimLeft(s[i:], " \t")
}

// globRegexp turns a Globus cond_subjects glob into an anchored,
// case-insensitive regexp: "*" matches any run of characters (including
// "/"), "?" exactly one, everything else itself.
func globRegexp(glob string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^(?is:")
	for _, r := range normalizeLabels(glob) {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString(")$")
	return regexp.MustCompile(b.String())
}

// parseSigningPolicy parses a Globus EACL .signing_policy file:
//
//	# comment
//	access_id_CA   X509    '/C=XX/O=Some CA/CN=Some CA'
//	pos_rights     globus  CA:sign
//	cond_subjects  globus  '"/C=XX/O=Some CA/*" "/C=XX/O=Other/*"'
//
// Several access_id_CA blocks may follow each other. Each glob of a block
// becomes a permit rule for the block's CA. Anything else (neg_rights, other
// access_id_ kinds, rights other than CA:sign) is an error, so that a policy
// is never half understood.
func parseSigningPolicy(data []byte, file string) ([]rule, error) {
	type block struct {
		issuer string
		line   int
		rights bool
		conds  bool
	}
	var (
		rules []rule
		cur   *block
	)
	closeBlock := func(n int) error {
		if cur != nil && !cur.conds {
			return fmt.Errorf("%s:%d: access_id_CA block has no cond_subjects before line %d", file, cur.line, n)
		}
		return nil
	}
	lines := splitLines(data)
	for i, raw := range lines {
		n := i + 1
		line := strings.Trim(raw, " \t")
		if line == "" || line[0] == '#' {
			continue
		}
		kw, rest := cutField(line)
		switch kw {
		case "access_id_CA":
			if err := closeBlock(n); err != nil {
				return nil, err
			}
			auth, rest := cutField(rest)
			if auth != "X509" {
				return nil, fmt.Errorf("%s:%d: access_id_CA: want def. authority X509, got %q", file, n, auth)
			}
			dn, rest, err := quoted(rest, '\'')
			if err != nil {
				return nil, fmt.Errorf("%s:%d: access_id_CA: %w", file, n, err)
			}
			if strings.Trim(rest, " \t") != "" {
				return nil, fmt.Errorf("%s:%d: access_id_CA: unexpected %q after the CA name", file, n, rest)
			}
			if !strings.HasPrefix(dn, "/") {
				return nil, fmt.Errorf("%s:%d: access_id_CA: CA name %q does not start with /", file, n, dn)
			}
			cur = &block{issuer: dn, line: n}
		case "pos_rights":
			if cur == nil {
				return nil, fmt.Errorf("%s:%d: pos_rights outside an access_id_CA block", file, n)
			}
			auth, rest := cutField(rest)
			right, rest := cutField(rest)
			if auth != "globus" || right != "CA:sign" || rest != "" {
				return nil, fmt.Errorf("%s:%d: pos_rights: want \"globus CA:sign\", got %q", file, n, strings.TrimSpace(line[len(kw):]))
			}
			cur.rights = true
		case "cond_subjects":
			if cur == nil || !cur.rights {
				return nil, fmt.Errorf("%s:%d: cond_subjects without a preceding access_id_CA and pos_rights globus CA:sign", file, n)
			}
			auth, rest := cutField(rest)
			if auth != "globus" {
				return nil, fmt.Errorf("%s:%d: cond_subjects: want def. authority globus, got %q", file, n, auth)
			}
			value := rest
			if strings.HasPrefix(rest, "'") {
				var after string
				var err error
				value, after, err = quoted(rest, '\'')
				if err != nil {
					return nil, fmt.Errorf("%s:%d: cond_subjects: %w", file, n, err)
				}
				if strings.Trim(after, " \t") != "" {
					return nil, fmt.Errorf("%s:%d: cond_subjects: unexpected %q after the subjects", file, n, after)
				}
			}
			globs, err := splitGlobs(value)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: cond_subjects: %w", file, n, err)
			}
			for _, g := range globs {
				rules = append(rules, rule{issuer: cur.issuer, permit: true, pattern: g, re: globRegexp(g), file: file, line: n})
			}
			cur.conds = true
		default:
			return nil, fmt.Errorf("%s:%d: unsupported statement %q", file, n, kw)
		}
	}
	if err := closeBlock(len(lines)); err != nil {
		return nil, err
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("%s: no access_id_CA block", file)
	}
	return rules, nil
}

// quoted reads a string enclosed in q at the start of s (after blanks) and
// returns its content and what follows the closing quote.
func quoted(s string, q byte) (string, string, error) {
	s = strings.TrimLeft(s, " \t")
	if s == "" || s[0] != q {
		return "", "", fmt.Errorf("want a string in %c quotes, got %q", q, s)
	}
	end := strings.IndexByte(s[1:], q)
	if end < 0 {
		return "", "", fmt.Errorf("unterminated %c-quoted string %q", q, s)
	}
	return s[1 : 1+end], s[2+end:], nil
}

// splitGlobs splits the cond_subjects value: double-quoted globs separated
// by blanks, or bare blank-separated globs.
func splitGlobs(v string) ([]string, error) {
	var globs []string
	for {
		v = strings.TrimLeft(v, " \t")
		if v == "" {
			break
		}
		var g string
		if v[0] == '"' {
			var err error
			g, v, err = quoted(v, '"')
			if err != nil {
				return nil, err
			}
			if v != "" && !isBlank(v[0]) {
				return nil, fmt.Errorf("want a blank after %q", g)
			}
		} else {
			g, v = cutField(v)
		}
		if g != "" {
			globs = append(globs, g)
		}
	}
	if len(globs) == 0 {
		return nil, errors.New("no subject patterns")
	}
	return globs, nil
}

// parseNamespaces parses an EUGridPMA .namespaces file (format 1.0):
//
//	#NAMESPACES-VERSION: 1.0
//	TO Issuer "/C=XX/O=Some CA/CN=Some CA" \
//	  PERMIT Subject "/C=XX/O=Some CA/.*"
//	TO Issuer SELF DENY Subject ".*/CN=forbidden.*"
//
// Keywords are case-insensitive, a line ending in a single backslash
// continues on the next, "#" outside quotes starts a comment. A backslash
// inside quotes keeps the next character (so \" does not end the string);
// the text between the quotes is used as it is: the issuer as a one-line DN,
// the subject as a regular expression anchored at both ends. SELF names the
// CA whose hash names the file.
func parseNamespaces(data []byte, file string) ([]rule, error) {
	var rules []rule
	var stmt strings.Builder
	stmtLine := 0
	lines := splitLines(data)
	for i, raw := range lines {
		n := i + 1
		line := strings.TrimRight(stripComment(raw), " \t")
		if stmt.Len() == 0 {
			stmtLine = n
		}
		if strings.HasSuffix(line, `\`) && !strings.HasSuffix(line, `\\`) {
			line = line[:len(line)-1]
			if n < len(lines) {
				stmt.WriteString(line)
				stmt.WriteByte(' ')
				continue
			}
		}
		stmt.WriteString(line)
		text := strings.Trim(stmt.String(), " \t")
		stmt.Reset()
		if text == "" {
			continue
		}
		r, err := parseNamespaceStatement(text)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, stmtLine, err)
		}
		r.file, r.line = file, stmtLine
		rules = append(rules, r)
	}
	if len(rules) == 0 {
		return nil, fmt.Errorf("%s: no TO Issuer statement", file)
	}
	return rules, nil
}

// stripComment drops a "#" comment that is not inside double quotes and not
// escaped by a backslash.
func stripComment(s string) string {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			inQuote = !inQuote
		case '#':
			if !inQuote {
				return s[:i]
			}
		}
	}
	return s
}

// nsQuoted reads a double-quoted namespaces string, where a backslash keeps
// the next character; the content is returned verbatim.
func nsQuoted(s string) (string, string, error) {
	if s == "" || s[0] != '"' {
		return "", "", fmt.Errorf("want a double-quoted string, got %q", s)
	}
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return s[1:i], s[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("unterminated string %q", s)
}

func parseNamespaceStatement(s string) (rule, error) {
	var r rule
	expect := func(word string) error {
		var f string
		f, s = cutField(s)
		if !strings.EqualFold(f, word) {
			return fmt.Errorf("want %s, got %q", word, f)
		}
		return nil
	}
	if err := expect("TO"); err != nil {
		return r, err
	}
	if err := expect("Issuer"); err != nil {
		return r, err
	}
	if strings.HasPrefix(s, `"`) {
		var err error
		if r.issuer, s, err = nsQuoted(s); err != nil {
			return r, fmt.Errorf("issuer: %w", err)
		}
		if !strings.HasPrefix(r.issuer, "/") {
			return r, fmt.Errorf("issuer %q does not start with /", r.issuer)
		}
		if s != "" && !isBlank(s[0]) {
			return r, fmt.Errorf("want a blank after the issuer, got %q", s)
		}
	} else {
		var f string
		f, s = cutField(s)
		if !strings.EqualFold(f, "SELF") {
			return r, fmt.Errorf("want a quoted issuer DN or SELF, got %q", f)
		}
		r.self = true
	}
	verb, rest := cutField(s)
	s = rest
	switch {
	case strings.EqualFold(verb, "PERMIT"):
		r.permit = true
	case strings.EqualFold(verb, "DENY"):
	default:
		return r, fmt.Errorf("want PERMIT or DENY, got %q", verb)
	}
	if err := expect("Subject"); err != nil {
		return r, err
	}
	var err error
	if r.pattern, s, err = nsQuoted(s); err != nil {
		return r, fmt.Errorf("subject: %w", err)
	}
	if strings.Trim(s, " \t") != "" {
		return r, fmt.Errorf("unexpected %q after the subject", s)
	}
	pat := normalizeLabels(r.pattern)
	// Compile the pattern alone first, so that wrapping it in a group
	// cannot change its meaning (an unbalanced ")" would otherwise escape
	// the anchors).
	if _, err := regexp.Compile(pat); err != nil {
		return r, fmt.Errorf("subject %q: %w", r.pattern, err)
	}
	if r.re, err = regexp.Compile("^(?is:" + pat + ")$"); err != nil {
		return r, fmt.Errorf("subject %q: %w", r.pattern, err)
	}
	return r, nil
}

// policyFileHash returns the 8-hex-digit hash prefix of a policy file name
// ("1a2b3c4d.namespaces"), or "".
func policyFileHash(name string) string {
	base, _, ok := strings.Cut(name, ".")
	if !ok || len(base) != 8 {
		return ""
	}
	for i := 0; i < len(base); i++ {
		if !isHex(base[i]) {
			return ""
		}
	}
	return strings.ToLower(base)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// checkNamespace applies rules (all the rules of one CA) to a one-line
// subject: a matching DENY rule refuses it, otherwise a matching PERMIT rule
// admits it, otherwise it is refused. It returns nil or a description of the
// refusal.
func checkNamespace(rules []rule, subject string) error {
	s := normalizeLabels(subject)
	permitted := false
	for _, r := range rules {
		if !r.re.MatchString(s) {
			continue
		}
		if !r.permit {
			return fmt.Errorf("denied by %s", r)
		}
		permitted = true
	}
	if permitted {
		return nil
	}
	files := make([]string, 0, len(rules))
	seen := map[string]bool{}
	for _, r := range rules {
		if !seen[r.file] {
			seen[r.file] = true
			files = append(files, r.file)
		}
	}
	return fmt.Errorf("matches no PERMIT rule in %s", strings.Join(files, ", "))
}

// trimBOM drops a UTF-8 byte order mark.
func trimBOM(b []byte) []byte { return bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) }
