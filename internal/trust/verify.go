package trust

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
	"time"
)

// CRLPolicy says how strictly CRLs are required.
type CRLPolicy int

const (
	// CRLRequire (the default): the issuer of every certificate in the chain
	// below the trust anchor must have a CRL with a valid signature that is
	// current at the reference time (vmcatcher/smimeX509validation
	// behaviour).
	CRLRequire CRLPolicy = iota
	// CRLIfPresent: check only issuers that have a CRL (with a valid
	// signature) in the directory; such a CRL must still be current.
	CRLIfPresent
	// CRLIgnore: do not look at CRLs.
	CRLIgnore
)

// String returns the name ParseCRLPolicy accepts.
func (c CRLPolicy) String() string {
	switch c {
	case CRLRequire:
		return "require"
	case CRLIfPresent:
		return "if-present"
	case CRLIgnore:
		return "ignore"
	}
	return fmt.Sprintf("CRLPolicy(%d)", int(c))
}

// ParseCRLPolicy parses "require", "if-present" or "ignore".
func ParseCRLPolicy(s string) (CRLPolicy, error) {
	for _, c := range []CRLPolicy{CRLRequire, CRLIfPresent, CRLIgnore} {
		if s == c.String() {
			return c, nil
		}
	}
	return 0, fmt.Errorf("unknown CRL policy %q (want require, if-present or ignore)", s)
}

// Purpose says which certificates may sign.
type Purpose int

const (
	// PurposeSMIME (the default) applies OpenSSL's smime_sign purpose, which
	// `openssl smime -verify` and M2Crypto enforce, to the signer: extended
	// key usage absent or containing emailProtection (or
	// anyExtendedKeyUsage); key usage absent or containing digitalSignature
	// or nonRepudiation; Netscape cert type absent or containing S/MIME or
	// SSL client. CAs in the chain that carry an extended key usage must
	// allow emailProtection (or any) too. Host certificates
	// (serverAuth-only, as AppDB signs with) fail it.
	PurposeSMIME Purpose = iota
	// PurposeAny skips the purpose checks (`openssl smime -verify -purpose
	// any`): needed for lists signed with a host certificate.
	PurposeAny
)

// String returns the name ParsePurpose accepts.
func (p Purpose) String() string {
	switch p {
	case PurposeSMIME:
		return "smime"
	case PurposeAny:
		return "any"
	}
	return fmt.Sprintf("Purpose(%d)", int(p))
}

// ParsePurpose parses "smime" or "any".
func ParsePurpose(s string) (Purpose, error) {
	for _, p := range []Purpose{PurposeSMIME, PurposeAny} {
		if s == p.String() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("unknown purpose %q (want smime or any)", s)
}

// Policy is what Verify checks against.
type Policy struct {
	Time    time.Time // reference time for the whole check (required)
	CRL     CRLPolicy
	Purpose Purpose
}

// Result describes a trusted chain.
type Result struct {
	Chain     []*x509.Certificate // leaf first, trust anchor last
	SubjectDN string              // leaf subject, OpenSSL one-line form
	IssuerDN  string              // leaf issuer, OpenSSL one-line form
	CAFile    string              // file of the trust anchor used
}

// Verify checks that leaf chains to a CA of the directory at p.Time, with
// intermediates (which need not be trusted) as possible links. In order:
//
//  1. chain: signatures, validity periods of every certificate at p.Time, CA
//     constraints (crypto/x509, any extended key usage);
//  2. purpose (p.Purpose);
//  3. CRLs of the issuer of every certificate below the anchor (p.CRL); the
//     anchor's own revocation is not checked, nothing above it could revoke
//     it;
//  4. namespaces: every certificate below the anchor must be permitted by the
//     signing_policy/namespaces rules of its issuer, when that issuer has
//     any.
//
// When several chains exist, chains ending at a self-signed CA of the
// directory are preferred to chains ending at a subordinate CA of the
// directory, and the first chain passing every check is returned; otherwise
// the error of the first chain is. Errors are *VerifyError wrapping one
// sentinel, except for misuse (nil leaf, zero p.Time, unknown policy values).
func (s *Store) Verify(leaf *x509.Certificate, intermediates []*x509.Certificate, p Policy) (*Result, error) {
	if s == nil || s.roots == nil {
		return nil, errors.New("verify: store not loaded")
	}
	if leaf == nil {
		return nil, errors.New("verify: no certificate")
	}
	if p.Time.IsZero() {
		return nil, errors.New("verify: policy has no reference time")
	}
	if p.CRL < CRLRequire || p.CRL > CRLIgnore {
		return nil, fmt.Errorf("verify: unknown CRL policy %d", int(p.CRL))
	}
	if p.Purpose < PurposeSMIME || p.Purpose > PurposeAny {
		return nil, fmt.Errorf("verify: unknown purpose %d", int(p.Purpose))
	}
	var given []*x509.Certificate
	for _, c := range intermediates {
		if c != nil {
			given = append(given, c)
		}
	}
	pool := x509.NewCertPool()
	for _, c := range s.subCAs {
		pool.AddCert(c)
	}
	for _, c := range given {
		pool.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         s.roots,
		Intermediates: pool,
		CurrentTime:   p.Time,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, s.chainError(leaf, given, p, err)
	}
	var full, partial [][]*x509.Certificate
	for _, ch := range chains {
		if selfSigned(ch[len(ch)-1]) {
			full = append(full, ch)
		} else {
			partial = append(partial, ch)
		}
	}
	if len(full) > 0 {
		chains = full
	} else {
		chains = partial
	}
	var first error
	for _, ch := range chains {
		ch, err := s.extendToIssuers(ch, p)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		res, err := s.checkChain(ch, p)
		if err == nil {
			return res, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// extendToIssuers completes a chain that ends at a subordinate CA of the
// directory with that CA's issuers from the directory. crypto/x509 stops at
// the subordinate when no full chain verifies (an expired root, a SHA-1
// signature from the root); accepting the subordinate as the anchor then
// would skip the root's validity and its CRL, which may revoke the
// subordinate. So each issuer found by name is appended and must be valid
// at the reference time and have signed its subordinate with an algorithm
// Go accepts; the CRL checks then cover the whole chain. A subordinate whose
// issuer is not in the directory stays the anchor.
func (s *Store) extendToIssuers(chain []*x509.Certificate, p Policy) ([]*x509.Certificate, error) {
	for len(chain) <= 16 {
		top := chain[len(chain)-1]
		if selfSigned(top) {
			return chain, nil
		}
		var issuer *x509.Certificate
		var sigErr error
		for _, ca := range s.cas {
			if !bytes.Equal(ca.Cert.RawSubject, top.RawIssuer) {
				continue
			}
			if err := top.CheckSignatureFrom(ca.Cert); err != nil {
				var insecure x509.InsecureAlgorithmError
				if errors.As(err, &insecure) {
					sigErr = err
				}
				continue
			}
			issuer = ca.Cert
			break
		}
		if issuer == nil {
			if sigErr != nil {
				return nil, &VerifyError{Subject: onelineOr(top.RawSubject), CAFile: s.fileOf[string(top.Raw)], Err: wrap(ErrInsecureAlgorithm, fmt.Sprintf(
					"signed by its issuer in the CA directory with %v, which Go refuses, so its revocation cannot be checked; ask the CA for a SHA-2 certificate", top.SignatureAlgorithm))}
			}
			return chain, nil
		}
		if verr := s.validity(issuer, p); verr != nil {
			return nil, verr
		}
		chain = append(chain, issuer)
	}
	return nil, &VerifyError{Subject: onelineOr(chain[0].RawSubject), Err: wrap(ErrUnknownAuthority, "chain too long")}
}

func (s *Store) checkChain(chain []*x509.Certificate, p Policy) (*Result, error) {
	if p.Purpose == PurposeSMIME {
		if err := s.checkPurpose(chain); err != nil {
			return nil, err
		}
	}
	if err := s.checkCRLs(chain, p); err != nil {
		return nil, err
	}
	if err := s.checkNamespaces(chain); err != nil {
		return nil, err
	}
	leaf := chain[0]
	return &Result{
		Chain:     chain,
		SubjectDN: onelineOr(leaf.RawSubject),
		IssuerDN:  onelineOr(leaf.RawIssuer),
		CAFile:    s.fileOf[string(chain[len(chain)-1].Raw)],
	}, nil
}

func ts(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// validity reports c's validity period against p.Time, or nil if it covers
// it.
func (s *Store) validity(c *x509.Certificate, p Policy) *VerifyError {
	switch {
	case p.Time.Before(c.NotBefore):
		return &VerifyError{Subject: onelineOr(c.RawSubject), CAFile: s.fileOf[string(c.Raw)],
			Err: wrap(ErrNotYetValid, fmt.Sprintf("not yet valid: valid from %s, reference time %s", ts(c.NotBefore), ts(p.Time)))}
	case p.Time.After(c.NotAfter):
		return &VerifyError{Subject: onelineOr(c.RawSubject), CAFile: s.fileOf[string(c.Raw)],
			Err: wrap(ErrExpired, fmt.Sprintf("expired: valid until %s, reference time %s", ts(c.NotAfter), ts(p.Time)))}
	}
	return nil
}

// chainError turns a crypto/x509 verification error into a *VerifyError.
// crypto/x509 reports an expired leaf as a CertificateInvalidError, but
// problems with issuers (a SHA-1 signature, a same-name CA with another key,
// often an expired CA) as an UnknownAuthorityError whose cause is not
// accessible, so for those the candidate issuers are examined here.
func (s *Store) chainError(leaf *x509.Certificate, given []*x509.Certificate, p Policy, err error) error {
	subject := onelineOr(leaf.RawSubject)
	var (
		invalid  x509.CertificateInvalidError
		unknown  x509.UnknownAuthorityError
		insecure x509.InsecureAlgorithmError
		critical x509.UnhandledCriticalExtension
	)
	switch {
	case errors.As(err, &invalid):
		c := invalid.Cert
		if c == nil {
			c = leaf
		}
		if invalid.Reason == x509.Expired {
			if v := s.validity(c, p); v != nil {
				return v
			}
		}
		return &VerifyError{Subject: onelineOr(c.RawSubject), CAFile: s.fileOf[string(c.Raw)],
			Err: wrap(ErrUnknownAuthority, "no valid chain: "+err.Error())}
	case errors.As(err, &unknown):
		if v := s.diagnose(leaf, given, p, 0); v != nil {
			return v
		}
		return &VerifyError{Subject: subject, Err: wrap(ErrUnknownAuthority,
			fmt.Sprintf("unknown authority: no chain to a CA in %s (%v)", s.dir, err))}
	case errors.As(err, &insecure):
		return &VerifyError{Subject: subject, Err: insecureError(x509.SignatureAlgorithm(insecure))}
	case errors.As(err, &critical):
		return &VerifyError{Subject: subject, Err: wrap(ErrUnknownAuthority, "no valid chain: "+err.Error())}
	}
	return &VerifyError{Subject: subject, Err: wrap(ErrUnknownAuthority,
		fmt.Sprintf("unknown authority: no chain to a CA in %s (%v)", s.dir, err))}
}

func insecureError(alg x509.SignatureAlgorithm) error {
	return wrap(ErrInsecureAlgorithm, fmt.Sprintf(
		"insecure signature algorithm: signed with %v, which Go refuses (no override exists since Go 1.24); ask the CA for a SHA-2 certificate", alg))
}

func isInsecureAlg(alg x509.SignatureAlgorithm) bool {
	switch alg {
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.ECDSAWithSHA1:
		return true
	}
	return false
}

// diagnose explains why no chain leads from c to a CA of the directory, by
// examining the certificates (directory CAs and given intermediates) named
// as c's issuer. It returns nil if it finds no explanation.
func (s *Store) diagnose(c *x509.Certificate, given []*x509.Certificate, p Policy, depth int) *VerifyError {
	if depth > 8 {
		return nil
	}
	subject := onelineOr(c.RawSubject)
	var cands []*x509.Certificate
	seen := map[string]bool{string(c.Raw): true}
	for _, ca := range s.cas {
		if bytes.Equal(ca.Cert.RawSubject, c.RawIssuer) && !seen[string(ca.Cert.Raw)] {
			seen[string(ca.Cert.Raw)] = true
			cands = append(cands, ca.Cert)
		}
	}
	for _, g := range given {
		if bytes.Equal(g.RawSubject, c.RawIssuer) && !seen[string(g.Raw)] {
			seen[string(g.Raw)] = true
			cands = append(cands, g)
		}
	}
	if len(cands) == 0 {
		msg := fmt.Sprintf("unknown authority: issuer %q is not a CA in %s", onelineOr(c.RawIssuer), s.dir)
		if selfSigned(c) {
			msg = fmt.Sprintf("unknown authority: self-signed and not a CA in %s", s.dir)
		}
		return &VerifyError{Subject: subject, Err: wrap(ErrUnknownAuthority, msg)}
	}
	var (
		insecure   *VerifyError
		constraint *VerifyError
		otherKey   []string
	)
	for _, cand := range cands {
		file := s.fileOf[string(cand.Raw)]
		where := file
		if where == "" {
			where = "the supplied intermediates"
		}
		err := c.CheckSignatureFrom(cand)
		var ia x509.InsecureAlgorithmError
		var cv x509.ConstraintViolationError
		switch {
		case err == nil:
			if v := s.validity(cand, p); v != nil {
				return v
			}
			if file != "" && selfSigned(cand) {
				continue // a valid anchor signed c: the reason lies elsewhere
			}
			if v := s.diagnose(cand, given, p, depth+1); v != nil {
				return v
			}
		case errors.As(err, &ia):
			// Go refuses the algorithm before checking the signature;
			// blame the algorithm only if the signature is genuine (or
			// cannot be checked at all, as for MD5).
			if alg := c.SignatureAlgorithm; isInsecureAlg(alg) &&
				(cand.CheckSignature(alg, c.RawTBSCertificate, c.Signature) == nil ||
					alg == x509.MD5WithRSA || alg == x509.MD2WithRSA) {
				insecure = &VerifyError{Subject: subject, CAFile: file, Err: insecureError(alg)}
			} else {
				otherKey = append(otherKey, where)
			}
		case errors.As(err, &cv):
			constraint = &VerifyError{Subject: subject, CAFile: file, Err: wrap(ErrUnknownAuthority,
				fmt.Sprintf("no valid chain: its issuer %q in %s may not sign certificates (basic constraints or key usage)", onelineOr(cand.RawSubject), where))}
		default:
			otherKey = append(otherKey, where)
		}
	}
	switch {
	case insecure != nil:
		return insecure
	case constraint != nil:
		return constraint
	case len(otherKey) > 0:
		return &VerifyError{Subject: subject, Err: wrap(ErrUnknownAuthority, fmt.Sprintf(
			"unknown authority: not signed by the CA %q in %s (another CA with the same name signed it)",
			onelineOr(c.RawIssuer), strings.Join(otherKey, ", ")))}
	}
	return nil
}

var (
	oidExtKeyUsage     = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidExtNetscapeType = asn1.ObjectIdentifier{2, 16, 840, 1, 113730, 1, 1}
)

// Netscape cert type bits (first octet of the BIT STRING).
const (
	nsSSLClient = 0x80
	nsSMIME     = 0x20
)

var ekuNames = map[x509.ExtKeyUsage]string{
	x509.ExtKeyUsageAny:                            "anyExtendedKeyUsage",
	x509.ExtKeyUsageServerAuth:                     "serverAuth",
	x509.ExtKeyUsageClientAuth:                     "clientAuth",
	x509.ExtKeyUsageCodeSigning:                    "codeSigning",
	x509.ExtKeyUsageEmailProtection:                "emailProtection",
	x509.ExtKeyUsageIPSECEndSystem:                 "ipsecEndSystem",
	x509.ExtKeyUsageIPSECTunnel:                    "ipsecTunnel",
	x509.ExtKeyUsageIPSECUser:                      "ipsecUser",
	x509.ExtKeyUsageTimeStamping:                   "timeStamping",
	x509.ExtKeyUsageOCSPSigning:                    "OCSPSigning",
	x509.ExtKeyUsageMicrosoftServerGatedCrypto:     "msSGC",
	x509.ExtKeyUsageNetscapeServerGatedCrypto:      "nsSGC",
	x509.ExtKeyUsageMicrosoftCommercialCodeSigning: "msCodeCom",
	x509.ExtKeyUsageMicrosoftKernelCodeSigning:     "msKernelCodeSigning",
}

// ekuAllowsSMIME: no extended key usage, or emailProtection or any.
func ekuAllowsSMIME(c *x509.Certificate) (bool, string) {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true, ""
	}
	var names []string
	for _, u := range c.ExtKeyUsage {
		if u == x509.ExtKeyUsageEmailProtection || u == x509.ExtKeyUsageAny {
			return true, ""
		}
		if n, ok := ekuNames[u]; ok {
			names = append(names, n)
		} else {
			names = append(names, fmt.Sprintf("eku(%d)", int(u)))
		}
	}
	for _, o := range c.UnknownExtKeyUsage {
		names = append(names, o.String())
	}
	return false, strings.Join(names, ", ")
}

func hasExtension(c *x509.Certificate, oid asn1.ObjectIdentifier) ([]byte, bool) {
	for _, e := range c.Extensions {
		if e.Id.Equal(oid) {
			return e.Value, true
		}
	}
	return nil, false
}

// checkPurpose applies OpenSSL's smime_sign purpose (see PurposeSMIME).
func (s *Store) checkPurpose(chain []*x509.Certificate) error {
	leaf := chain[0]
	fail := func(c *x509.Certificate, msg string) error {
		return &VerifyError{Subject: onelineOr(c.RawSubject), CAFile: s.fileOf[string(c.Raw)], Err: wrap(ErrPurpose, msg)}
	}
	if ok, ekus := ekuAllowsSMIME(leaf); !ok {
		return fail(leaf, fmt.Sprintf("unsuitable certificate purpose: extended key usage %s does not allow S/MIME signing "+
			"(needs emailProtection or anyExtendedKeyUsage; a host certificate needs purpose \"any\")", ekus))
	}
	if _, ok := hasExtension(leaf, oidExtKeyUsage); ok &&
		leaf.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return fail(leaf, fmt.Sprintf("unsuitable certificate purpose: key usage %s does not allow signing (needs digitalSignature or nonRepudiation)",
			keyUsageNames(leaf.KeyUsage)))
	}
	if v, ok := hasExtension(leaf, oidExtNetscapeType); ok {
		var bits asn1.BitString
		var first byte
		if rest, err := asn1.Unmarshal(v, &bits); err == nil && len(rest) == 0 && len(bits.Bytes) > 0 {
			first = bits.Bytes[0]
		}
		if first&(nsSMIME|nsSSLClient) == 0 {
			return fail(leaf, fmt.Sprintf("unsuitable certificate purpose: Netscape cert type %#02x allows neither S/MIME nor SSL client use", first))
		}
	}
	for _, ca := range chain[1:] {
		if ok, ekus := ekuAllowsSMIME(ca); !ok {
			return fail(ca, fmt.Sprintf("unsuitable certificate purpose: this CA's extended key usage %s excludes S/MIME signing for the certificates it issues", ekus))
		}
	}
	return nil
}

func keyUsageNames(ku x509.KeyUsage) string {
	names := []string{"digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment",
		"keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly"}
	var out []string
	for i, n := range names {
		if ku&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return "(empty)"
	}
	return strings.Join(out, ", ")
}

var reasonNames = map[int]string{
	1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged", 4: "superseded",
	5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL", 9: "privilegeWithdrawn",
	10: "aACompromise",
}

// checkCRLs checks, for every certificate below the anchor, the freshest CRL
// of its issuer (see Verify and CRLPolicy).
func (s *Store) checkCRLs(chain []*x509.Certificate, p Policy) error {
	if p.CRL == CRLIgnore {
		return nil
	}
	for i := 0; i+1 < len(chain); i++ {
		c, issuer := chain[i], chain[i+1]
		subject := onelineOr(c.RawSubject)
		caFile := s.fileOf[string(issuer.Raw)]
		issuerDN := onelineOr(issuer.RawSubject)
		rl, file := s.freshestCRL(issuer, p.Time)
		if rl == nil {
			if p.CRL == CRLIfPresent {
				continue
			}
			where := "CA file " + caFile
			if caFile == "" {
				where = "supplied intermediate"
			}
			return &VerifyError{Subject: subject, CAFile: caFile, Err: wrap(ErrNoCRL, fmt.Sprintf(
				"no valid CRL of issuer %q (%s) in %s: install fetch-crl or relax the CRL policy", issuerDN, where, s.dir))}
		}
		if p.Time.Before(rl.ThisUpdate) {
			return &VerifyError{Subject: subject, CAFile: caFile, CRLFile: file, Err: wrap(ErrCRLNotYetValid, fmt.Sprintf(
				"CRL not yet valid: CRL %s of CA %q was issued at %s, after the reference time %s", file, issuerDN, ts(rl.ThisUpdate), ts(p.Time)))}
		}
		if !rl.NextUpdate.IsZero() && p.Time.After(rl.NextUpdate) {
			return &VerifyError{Subject: subject, CAFile: caFile, CRLFile: file, Err: wrap(ErrCRLExpired, fmt.Sprintf(
				"stale CRL %s of CA %q: next update was %s, reference time %s (is fetch-crl running?)", file, issuerDN, ts(rl.NextUpdate), ts(p.Time)))}
		}
		for _, e := range rl.RevokedCertificateEntries {
			if e.SerialNumber == nil || e.SerialNumber.Cmp(c.SerialNumber) != 0 {
				continue
			}
			details := fmt.Sprintf("serial %s = 0x%X", c.SerialNumber, c.SerialNumber)
			if name, ok := reasonNames[e.ReasonCode]; ok {
				details += ", reason " + name
			}
			if !e.RevocationTime.IsZero() {
				details += ", since " + ts(e.RevocationTime)
			}
			return &VerifyError{Subject: subject, CAFile: caFile, CRLFile: file, Err: wrap(ErrRevoked, fmt.Sprintf(
				"revoked by CRL %s (%s)", file, details))}
		}
	}
	return nil
}

// checkNamespaces applies the issuer's namespace rules to every certificate
// below the anchor.
func (s *Store) checkNamespaces(chain []*x509.Certificate) error {
	for i := 0; i+1 < len(chain); i++ {
		c, issuer := chain[i], chain[i+1]
		issuerDN := onelineOr(issuer.RawSubject)
		key := dnKey(issuerDN)
		subject := onelineOr(c.RawSubject)
		caFile := s.fileOf[string(issuer.Raw)]
		if probs := s.broken[key]; len(probs) > 0 {
			return &VerifyError{Subject: subject, CAFile: caFile, Err: wrap(ErrNamespace, fmt.Sprintf(
				"namespace violation: the policy of CA %q cannot be read, so it signs nothing: %s", issuerDN, probs[0]))}
		}
		rules := s.rules[key]
		if len(rules) == 0 {
			continue
		}
		if err := checkNamespace(rules, subject); err != nil {
			return &VerifyError{Subject: subject, CAFile: caFile, Err: wrap(ErrNamespace, fmt.Sprintf(
				"namespace violation: CA %q may not sign this subject: %v", issuerDN, err))}
		}
	}
	return nil
}
