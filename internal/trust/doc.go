// Package trust decides whether a signer certificate is trusted: it loads an
// IGTF/OpenSSL-style CA directory (hashed `.0` and `.pem` certificates, `.r0`
// CRLs, `.signing_policy` and `.namespaces` files) and verifies a chain
// against it at a reference time the caller gives, checking validity, the
// signing purpose, CRLs and namespace policies; it also renders X.509 names
// in OpenSSL's one-line form ("/DC=org/DC=example/CN=x"), which is how image
// lists name their endorsers.
//
// Invariants:
//   - Every check uses Policy.Time; the package never reads the clock, never
//     prints or logs, and never trusts a time the signer supplied.
//   - Only certificates with CA basic constraints in the directory are trust
//     anchors; a CRL counts for a CA only if that CA's key signed it (a CA
//     with the same name but another key is a different CA).
//   - A Store is immutable after Load and safe for concurrent use.
//   - Every verification failure is a *VerifyError naming the certificate
//     (one-line DN) and the files involved, and wraps exactly one of the
//     exported sentinel errors, so callers branch with errors.Is.
//
// docs/trust.md describes the accepted layout and the rules for operators.
package trust
