package trust

import (
	"crypto/x509"
	"errors"
	"fmt"
)

// ParseCRLs parses every PEM "X509 CRL" block of data or, without one, data
// as a single DER CRL.
func ParseCRLs(data []byte) ([]*x509.RevocationList, error) { return parseCRLs(data) }

// IsDeltaCRL reports whether rl is a delta CRL (not supported: it lists
// only the changes since its base CRL).
func IsDeltaCRL(rl *x509.RevocationList) bool { return isDeltaCRL(rl) }

// Advice says in operator terms what to do about a verification failure:
// which file to look at and which command fixes it. It returns "" for an
// error that is not a trust failure.
func Advice(err error) string {
	var ve *VerifyError
	ca, crl := "the CA directory (-c)", "its CRL"
	if errors.As(err, &ve) {
		if ve.CAFile != "" {
			ca = ve.CAFile
		}
		if ve.CRLFile != "" {
			crl = ve.CRLFile
		}
	}
	switch {
	case errors.Is(err, ErrCRLExpired):
		return fmt.Sprintf("the CRL %s of the signer's CA (%s) is past its next update: run `clr-trust refresh` (or fetch-crl) and check that the CA's <hash>.crl_url or CRL distribution point is reachable; `clr-trust health` shows every CRL's dates", crl, ca)
	case errors.Is(err, ErrCRLNotYetValid):
		return fmt.Sprintf("the CRL %s is dated in the future: check this machine's clock (NTP)", crl)
	case errors.Is(err, ErrNoCRL):
		return fmt.Sprintf("there is no valid CRL for %s: run `clr-trust refresh`; a CRL that is present but not signed by the CA is ignored (see `clr-trust health`)", ca)
	case errors.Is(err, ErrRevoked):
		return fmt.Sprintf("the signer's certificate is revoked (by %s): the publisher must sign with a new certificate; images of this list stay unavailable until then", crl)
	case errors.Is(err, ErrUnknownAuthority):
		return "the signer's CA is not in the CA directory (-c): install the issuing CA (for grid sites, the IGTF trust anchors) or check that the list comes from the expected publisher"
	case errors.Is(err, ErrExpired):
		return "a certificate of the signer's chain has expired: the publisher must re-sign with a current certificate, or the CA directory needs the renewed CA (`clr-trust health` lists CA expiry)"
	case errors.Is(err, ErrNotYetValid):
		return "a certificate of the signer's chain is not valid yet: check this machine's clock (NTP)"
	case errors.Is(err, ErrNamespace):
		return fmt.Sprintf("the namespace policy (<hash>.signing_policy or .namespaces) of %s does not allow the signer's name: check the policy file, or ask the publisher which CA issued the certificate", ca)
	case errors.Is(err, ErrPurpose):
		return "the signer's certificate is not allowed to sign S/MIME (key usage / extended key usage): use a certificate with emailProtection, or --purpose any for host certificates"
	case errors.Is(err, ErrInsecureAlgorithm):
		return "a certificate of the chain is signed with SHA-1 or MD5, which Go refuses: the CA or publisher must reissue it with SHA-256"
	case errors.Is(err, ErrNoCAs):
		return "point -c (--ca-dir, --cert-dir, CLR_DIR_CERT) at a directory of CA certificates (<hash>.0 or .pem), e.g. the IGTF trust anchors"
	}
	return ""
}
