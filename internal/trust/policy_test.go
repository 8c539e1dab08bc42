package trust

import (
	"strings"
	"testing"
)

func TestParseSigningPolicy(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		issuers []string // issuer of each rule
		globs   []string // pattern of each rule
		err     string
	}{
		{name: "IGTF style", in: `# EACL
#--------------
 access_id_CA      X509         '/C=NL/O=NIKHEF/CN=NIKHEF medium-security certification auth'

 pos_rights        globus        CA:sign

 cond_subjects     globus       '"/O=dutchgrid/*" "/C=NL/O=NIKHEF/*"'
# end of EACL
`, issuers: []string{"/C=NL/O=NIKHEF/CN=NIKHEF medium-security certification auth", "/C=NL/O=NIKHEF/CN=NIKHEF medium-security certification auth"},
			globs: []string{"/O=dutchgrid/*", "/C=NL/O=NIKHEF/*"}},
		{name: "two blocks, tabs, CRLF", in: "access_id_CA\tX509\t'/CN=A'\r\npos_rights\tglobus\tCA:sign\r\ncond_subjects\tglobus\t'\"/O=A/*\"'\r\naccess_id_CA X509 '/CN=B'\npos_rights globus CA:sign\ncond_subjects globus '\"*\"'\n",
			issuers: []string{"/CN=A", "/CN=B"}, globs: []string{"/O=A/*", "*"}},
		{name: "unquoted subjects", in: "access_id_CA X509 '/CN=A'\npos_rights globus CA:sign\ncond_subjects globus \"/O=A/*\"\n",
			issuers: []string{"/CN=A"}, globs: []string{"/O=A/*"}},
		{name: "bare globs", in: "access_id_CA X509 '/CN=A'\npos_rights globus CA:sign\ncond_subjects globus /O=A/* /O=B/*\n",
			issuers: []string{"/CN=A", "/CN=A"}, globs: []string{"/O=A/*", "/O=B/*"}},
		{name: "DN with spaces and quotes in glob", in: "access_id_CA X509 '/C=XX/O=My Org/CN=My CA'\npos_rights globus CA:sign\ncond_subjects globus '\"/C=XX/O=My Org/*\"'\n",
			issuers: []string{"/C=XX/O=My Org/CN=My CA"}, globs: []string{"/C=XX/O=My Org/*"}},
		{name: "empty", in: "# nothing\n", err: "no access_id_CA block"},
		{name: "block without cond_subjects", in: "access_id_CA X509 '/CN=A'\npos_rights globus CA:sign\n", err: "has no cond_subjects"},
		{name: "cond_subjects without pos_rights", in: "access_id_CA X509 '/CN=A'\ncond_subjects globus '\"*\"'\n", err: "without a preceding access_id_CA and pos_rights"},
		{name: "pos_rights outside block", in: "pos_rights globus CA:sign\n", err: "outside an access_id_CA block"},
		{name: "other right", in: "access_id_CA X509 '/CN=A'\npos_rights globus CA:revoke\n", err: "want \"globus CA:sign\""},
		{name: "neg_rights unsupported", in: "access_id_CA X509 '/CN=A'\nneg_rights globus CA:sign\n", err: "unsupported statement \"neg_rights\""},
		{name: "other access_id", in: "access_id_ANYBODY\n", err: "unsupported statement"},
		{name: "wrong authority", in: "access_id_CA globus '/CN=A'\n", err: "want def. authority X509"},
		{name: "unterminated DN", in: "access_id_CA X509 '/CN=A\n", err: "unterminated"},
		{name: "DN not quoted", in: "access_id_CA X509 /CN=A\n", err: "want a string in ' quotes"},
		{name: "DN not absolute", in: "access_id_CA X509 'CN=A'\n", err: "does not start with /"},
		{name: "junk after DN", in: "access_id_CA X509 '/CN=A' x\n", err: "unexpected"},
		{name: "junk after subjects", in: "access_id_CA X509 '/CN=A'\npos_rights globus CA:sign\ncond_subjects globus '\"*\"' x\n", err: "unexpected"},
		{name: "no subjects", in: "access_id_CA X509 '/CN=A'\npos_rights globus CA:sign\ncond_subjects globus ''\n", err: "no subject patterns"},
		{name: "glued globs", in: "access_id_CA X509 '/CN=A'\npos_rights globus CA:sign\ncond_subjects globus '\"/a*\"\"/b*\"'\n", err: "want a blank after"},
		{name: "cond_subjects wrong authority", in: "access_id_CA X509 '/CN=A'\npos_rights globus CA:sign\ncond_subjects X509 '\"*\"'\n", err: "want def. authority globus"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := parseSigningPolicy([]byte(tc.in), "x.signing_policy")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "x.signing_policy") {
					t.Fatalf("err = %v, want one starting with the file and containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rules) != len(tc.globs) {
				t.Fatalf("%d rules, want %d", len(rules), len(tc.globs))
			}
			for i, r := range rules {
				if r.issuer != tc.issuers[i] || r.pattern != tc.globs[i] || !r.permit || r.self || r.re == nil {
					t.Errorf("rule %d = %+v", i, r)
				}
			}
		})
	}
}

func TestParseNamespaces(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // rule.String() without the file name
		err  string
	}{
		{name: "IGTF style", in: `##############################################################################
#NAMESPACES-VERSION: 1.0
#
# @(#)$Id: 16da7552.namespaces,v 1.1 2010/01/01 $
# CA alias    : AEGIS
#    subord_of:
#    subjectDN: /C=RS/O=AEGIS/CN=AEGIS-CA
#
TO Issuer "/C=RS/O=AEGIS/CN=AEGIS-CA" \
  PERMIT Subject "/C=RS/O=AEGIS/.*"
`, want: []string{`:9 PERMIT "/C=RS/O=AEGIS/.*"`}},
		{name: "SELF, DENY, lower-case keywords, tabs", in: "to\tissuer SELF deny subject \".*/CN=bad\"\nTO Issuer \"/CN=A\" PERMIT Subject \"/O=A/.*\" # trailing comment\n",
			want: []string{`:1 DENY ".*/CN=bad"`, `:2 PERMIT "/O=A/.*"`}},
		{name: "escaped quote and hash in quotes", in: `TO Issuer "/CN=A" PERMIT Subject "/O=A \"q\" #1/.*"` + "\n", want: []string{`:1 PERMIT "/O=A \\\"q\\\" #1/.*"`}},
		{name: "continuation over three lines", in: "TO Issuer \"/CN=A\" \\\n PERMIT \\\n Subject \"/O=A/.*\"\n", want: []string{`:1 PERMIT "/O=A/.*"`}},
		{name: "backslash at the end of the file", in: "TO Issuer \"/CN=A\" PERMIT Subject \"/O=A/.*\" \\", want: []string{`:1 PERMIT "/O=A/.*"`}},
		{name: "empty", in: "#NAMESPACES-VERSION: 1.0\n", err: "no TO Issuer statement"},
		{name: "missing Issuer", in: "TO Subject \"x\"\n", err: "want Issuer"},
		{name: "bad issuer", in: "TO Issuer /CN=A PERMIT Subject \"x\"\n", err: "want a quoted issuer DN or SELF"},
		{name: "relative issuer", in: "TO Issuer \"CN=A\" PERMIT Subject \"x\"\n", err: "does not start with /"},
		{name: "bad verb", in: "TO Issuer SELF ALLOW Subject \"x\"\n", err: "want PERMIT or DENY"},
		{name: "missing subject", in: "TO Issuer SELF PERMIT Subject\n", err: "want a double-quoted string"},
		{name: "unterminated subject", in: "TO Issuer SELF PERMIT Subject \"x\n", err: "unterminated"},
		{name: "junk after subject", in: "TO Issuer SELF PERMIT Subject \"x\" y\n", err: "unexpected"},
		{name: "glued issuer", in: "TO Issuer \"/CN=A\"PERMIT Subject \"x\"\n", err: "want a blank after the issuer"},
		{name: "bad regexp", in: "TO Issuer SELF PERMIT Subject \"/O=(x\"\n", err: "missing closing )"},
		{name: "unbalanced group cannot escape the anchors", in: "TO Issuer SELF PERMIT Subject \"/O=x)|(.*\"\n", err: "unexpected )"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := parseNamespaces([]byte(tc.in), "f")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rules {
				got = append(got, strings.TrimPrefix(r.String(), "f"))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestNamespaceMatching(t *testing.T) {
	sp, err := parseSigningPolicy([]byte(`access_id_CA X509 '/C=DE/O=GermanGrid/CN=GridKa-CA'
pos_rights globus CA:sign
cond_subjects globus '"/C=DE/O=GermanGrid/*" "/C=DE/O=Grid?Test/CN=x.y" "/C=DE/Email=*"'
`), "sp")
	if err != nil {
		t.Fatal(err)
	}
	ns, err := parseNamespaces([]byte(`TO Issuer "/C=DE/O=GermanGrid/CN=GridKa-CA" PERMIT Subject "/C=DE/O=GermanGrid/OU=KIT/.*"
TO Issuer "/C=DE/O=GermanGrid/CN=GridKa-CA" DENY Subject "/C=DE/O=GermanGrid/OU=Banned/.*"
`), "ns")
	if err != nil {
		t.Fatal(err)
	}
	all := append(append([]rule{}, sp...), ns...)
	tests := []struct {
		name    string
		rules   []rule
		subject string
		want    string // "" permitted, else an error fragment
	}{
		{"glob star spans slashes", sp, "/C=DE/O=GermanGrid/OU=KIT/CN=Jörg", ""},
		{"glob is anchored at the start", sp, "/DC=x/C=DE/O=GermanGrid/CN=y", "matches no PERMIT rule in sp"},
		{"glob is anchored at the end", sp, "/C=DE/O=Grid-Test/CN=x.y/CN=z", "matches no PERMIT rule"},
		{"glob question mark is one character", sp, "/C=DE/O=Grid-Test/CN=x.y", ""},
		{"glob dot is literal", sp, "/C=DE/O=Grid-Test/CN=xzy", "matches no PERMIT rule"},
		{"glob case-insensitive", sp, "/c=de/o=germangrid/CN=y", ""},
		{"old Email label matches emailAddress", sp, "/C=DE/emailAddress=a@b", ""},
		{"regexp anchored", ns, "/C=DE/O=GermanGrid/OU=KIT", "matches no PERMIT rule in ns"},
		{"regexp permit", ns, "/C=DE/O=GermanGrid/OU=KIT/CN=a", ""},
		{"deny wins over a permit of the other file", all, "/C=DE/O=GermanGrid/OU=Banned/CN=a", `denied by ns:2 DENY "/C=DE/O=GermanGrid/OU=Banned/.*"`},
		{"union of both files", all, "/C=DE/O=GermanGrid/OU=Other/CN=a", ""},
		{"no match lists both files", all, "/C=FR/CN=a", "matches no PERMIT rule in sp, ns"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkNamespace(tc.rules, tc.subject)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestNormalizeLabels(t *testing.T) {
	tests := map[string]string{
		"/C=DE/Email=a@b":          "/C=DE/emailAddress=a@b",
		"/E=a@b/CN=x":              "/emailAddress=a@b/CN=x",
		"/USERID=u/CN=E=mc2":       "/UID=u/CN=E=mc2",
		"no slash":                 "no slash",
		"/CN=x/email":              "/CN=x/email",
		"/emailAddress=already/.*": "/emailAddress=already/.*",
	}
	for in, want := range tests {
		if got := normalizeLabels(in); got != want {
			t.Errorf("normalizeLabels(%q) = %q, want %q", in, got, want)
		}
	}
	if dnKey("/C=DE/Email=X") != dnKey("/c=de/emailaddress=x") {
		t.Error("dnKey does not fold case and labels")
	}
}

func TestPolicyFileHash(t *testing.T) {
	tests := map[string]string{
		"1A2b3c4d.namespaces":     "1a2b3c4d",
		"1a2b3c4d.signing_policy": "1a2b3c4d",
		"AEGIS.namespaces":        "",
		"1a2b3c4g.namespaces":     "",
		"1a2b3c4d5.namespaces":    "",
	}
	for in, want := range tests {
		if got := policyFileHash(in); got != want {
			t.Errorf("policyFileHash(%q) = %q, want %q", in, got, want)
		}
	}
}
