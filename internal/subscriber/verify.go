// Package subscriber holds the subscriber-side workflow. Its first piece is
// [Verify]: the one way raw bytes from a publisher become a trusted image
// list (DESIGN section 4, rules R3 and R4 of section 5).
package subscriber

import (
	"crypto"
	"errors"
	"fmt"
	"time"

	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/smime"
	"github.com/clr-suite/clr/internal/trust"
)

// Errors of the list checks that follow the signature (vmcatcher codes in
// brackets).
var (
	ErrDNMismatch      = errors.New("endorser does not match signer")   // 12
	ErrListExpired     = errors.New("image list expired")               // 34
	ErrCreatedInFuture = errors.New("image list created in the future") // 33
)

// ClockSkew is how far in the future a list's dc:date:created may be.
const ClockSkew = 5 * time.Minute

// VerifyOptions configures Verify.
type VerifyOptions struct {
	Trust   *trust.Store // required unless SignatureOnly
	Policy  trust.Policy // Policy.Time is the run's reference time
	MaxSize int64        // cap on the signed document; 0: imagelist.DefaultMaxSize
	// SignatureOnly checks the signature over the content and the
	// endorser DNs, but not the certificate chain, CRLs or list dates:
	// for inspecting old or foreign lists, never for accepting them.
	SignatureOnly bool
}

// Verified is a list whose bytes were proven to come from its signer.
type Verified struct {
	List      *imagelist.List
	Problems  []imagelist.Problem // tolerated problems (left-out images, deprecated form)
	Content   []byte              // the exact signed bytes
	SubjectDN string              // signer, OpenSSL one-line form
	IssuerDN  string              // signer's issuer, OpenSSL one-line form
	Digest    crypto.Hash
	Chain     *trust.Result // nil with SignatureOnly
}

// Verify checks raw in this order: size cap, S/MIME structure, signature
// over the exact content, certificate chain with CRLs and namespaces at the
// reference time, image list syntax (only verified bytes are parsed), the
// endorser DNs against the signer, then the list's dates.
func Verify(raw []byte, opts VerifyOptions) (*Verified, error) {
	max := opts.MaxSize
	if max == 0 {
		max = imagelist.DefaultMaxSize
	}
	// The cap is on the list; the signed message around it may be larger
	// (base64 of an opaque message is 4/3 of it, plus the signature).
	if limit := max*3/2 + 64<<10; max > 0 && int64(len(raw)) > limit {
		return nil, fmt.Errorf("signed list is %d bytes: %w (limit %d)", len(raw), imagelist.ErrTooLarge, limit)
	}
	msg, err := smime.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("verify signature: %w", err)
	}
	signed, err := msg.Verify()
	if err != nil {
		return nil, fmt.Errorf("verify signature: %w", err)
	}
	v := &Verified{Content: signed.Content, Digest: signed.Digest}
	if !opts.SignatureOnly {
		if opts.Trust == nil {
			return nil, errors.New("verify: no trust store")
		}
		res, err := opts.Trust.Verify(signed.Signer, signed.Certificates, opts.Policy)
		if err != nil {
			return nil, fmt.Errorf("verify signer: %w", err)
		}
		v.Chain = res
		v.SubjectDN, v.IssuerDN = res.SubjectDN, res.IssuerDN
	} else {
		if v.SubjectDN, err = trust.Oneline(signed.Signer.RawSubject); err != nil {
			return nil, fmt.Errorf("signer subject: %w", err)
		}
		if v.IssuerDN, err = trust.Oneline(signed.Signer.RawIssuer); err != nil {
			return nil, fmt.Errorf("signer issuer: %w", err)
		}
	}
	v.List, v.Problems, err = imagelist.Parse(signed.Content, imagelist.ParseOptions{MaxSize: max})
	if err != nil {
		return nil, err
	}
	if got := v.List.Endorser.DN; got != v.SubjectDN {
		return nil, fmt.Errorf("%w: hv:dn is %q, signer is %q", ErrDNMismatch, got, v.SubjectDN)
	}
	if got := v.List.Endorser.CA; got != v.IssuerDN {
		return nil, fmt.Errorf("%w: hv:ca is %q, signer's issuer is %q", ErrDNMismatch, got, v.IssuerDN)
	}
	if !opts.SignatureOnly {
		now := opts.Policy.Time
		if now.After(v.List.Expires) {
			return nil, fmt.Errorf("%w: dc:date:expires is %s", ErrListExpired, imagelist.FormatTime(v.List.Expires))
		}
		if v.List.Created.After(now.Add(ClockSkew)) {
			return nil, fmt.Errorf("%w: dc:date:created is %s", ErrCreatedInFuture, imagelist.FormatTime(v.List.Created))
		}
	}
	return v, nil
}
