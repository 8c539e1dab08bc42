package cli

import (
	"errors"

	"github.com/clr-suite/clr/internal/fsutil"
	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/publish"
	"github.com/clr-suite/clr/internal/push"
	"github.com/clr-suite/clr/internal/smime"
	"github.com/clr-suite/clr/internal/store"
	"github.com/clr-suite/clr/internal/subscriber"
	"github.com/clr-suite/clr/internal/transport"
	"github.com/clr-suite/clr/internal/trust"
)

// Exit codes shared by the suite. The list codes are vmcatcher's
// (DESIGN section 6); docs/exit-codes.md is the reference.
const (
	ExitNotFound          = 3  // no such endorser, subscription or image
	ExitConflict          = 4  // already exists, or an ambiguous selector
	ExitDatabase          = 5  // database busy, of another program, or of a newer clr
	ExitDownload          = 10 // the list could not be downloaded
	ExitSignature         = 11 // S/MIME or certificate chain verification failed
	ExitDNMismatch        = 12 // hv:dn/hv:ca do not match the signer
	ExitEndorserNotLinked = 13 // the signer is not an endorser linked to the subscription
	ExitRollback          = 17 // lower hv:version, older dc:date:created, or same-version replay
	ExitLibrary           = 20 // the publisher's library folder cannot be read
	ExitSigner            = 21 // signer certificate or key unusable
	ExitMirror            = 22 // a mirror could not be updated (clr-publish push)
	ExitChanged           = 23 // a library file changed after it was hashed (clr-publish --tree)
	ExitTreeLocked        = 6  // another clr-publish holds the release tree (as clr-cache's lock)
	ExitIdentifier        = 31 // the list's dc:identifier is not the subscription's
	ExitNewImageRefused   = 32 // the list was accepted, but new images were refused (--imagelist-newimage-refuse)
	ExitFuture            = 33 // list created in the future
	ExitExpired           = 34 // list expired
	ExitNotJSON           = 37 // not JSON (or over the size cap)
	ExitNotImageList      = 38 // JSON but not an image list
)

// Classify maps the domain errors of the suite to exit codes and hints.
func Classify(err error) (int, string) {
	type rule struct {
		target error
		code   int
		hint   string
	}
	// trust failures: exit 11 with advice that names the CA and CRL files
	// and the command that fixes them (trust.Advice).
	for _, target := range []error{trust.ErrCRLExpired, trust.ErrCRLNotYetValid, trust.ErrNoCRL, trust.ErrRevoked,
		trust.ErrExpired, trust.ErrNotYetValid, trust.ErrUnknownAuthority, trust.ErrNoCAs, trust.ErrPurpose,
		trust.ErrNamespace, trust.ErrInsecureAlgorithm} {
		if errors.Is(err, target) && !isSubscriberOutcome(err) {
			return ExitSignature, trust.Advice(err)
		}
	}
	for _, r := range []rule{
		{subscriber.ErrIdentifierMismatch, ExitIdentifier, "this URL serves another list than the one subscribed; subscribe to it separately"},
		{subscriber.ErrEndorserNotLinked, ExitEndorserNotLinked, "link the signer's endorser: clr-endorser --link -e ENDORSER -s SUBSCRIPTION"},
		{subscriber.ErrRollback, ExitRollback, "an older list was served; if the publisher really went back, the operator must reset the floor (R7)"},
		{subscriber.ErrReplay, ExitRollback, "the list changed without a newer hv:version or dc:date:created: the publisher must raise hv:version"},
		{subscriber.ErrEndorserUnknown, ExitEndorserNotLinked, "create the endorser with clr-endorser --create, or subscribe with --auto-endorse"},
		{subscriber.ErrNewImageRefused, ExitNewImageRefused, "select new images with clr-subscribe --imagelist-newimage-accept or -subscribe"},
		{subscriber.ErrAlreadySubscribed, ExitConflict, ""},
		{subscriber.ErrCredentials, ExitFailure, "the file or variable must hold user:password"},
		{transport.ErrDownload, ExitDownload, ""},
		{store.ErrRollback, ExitRollback, "an older list was served; if the publisher really went back, the operator must reset the floor (R7)"},
		{imagelist.ErrInvalidTime, ExitNotImageList, ""},
		{imagelist.ErrInvalidImage, ExitNotImageList, ""},
		{subscriber.ErrDNMismatch, ExitDNMismatch, "the list's hv:endorser must name the signing certificate's subject and issuer"},
		{subscriber.ErrListExpired, ExitExpired, "the publisher must re-sign the list"},
		{subscriber.ErrCreatedInFuture, ExitFuture, "check the clocks of publisher and subscriber"},
		{smime.ErrEncryptedKey, ExitSigner, "decrypt it: openssl pkey -in KEY -out PLAIN.key"},
		{smime.ErrDigestMismatch, ExitSignature, ""},
		{smime.ErrTextMode, ExitSignature, "sign without -text"},
		{smime.ErrMalformed, ExitSignature, ""},
		{smime.ErrBadSignature, ExitSignature, ""},
		{smime.ErrSignerCount, ExitSignature, ""},
		{smime.ErrNoSignerCert, ExitSignature, "sign without -nocerts so the signer certificate is embedded"},
		{smime.ErrUnsupported, ExitSignature, ""},
		{imagelist.ErrTooLarge, ExitNotJSON, ""},
		{fsutil.ErrTooLarge, ExitNotJSON, ""},
		{imagelist.ErrNotJSON, ExitNotJSON, ""},
		{imagelist.ErrNotImageList, ExitNotImageList, ""},
		{publish.ErrLibrary, ExitLibrary, ""},
		{store.ErrNotFound, ExitNotFound, ""},
		{store.ErrConflict, ExitConflict, ""},
		{store.ErrAmbiguous, ExitConflict, "name the subscription too"},
		{store.ErrBusy, ExitDatabase, "another clr process held the database too long; retry"},
		{store.ErrSchemaTooNew, ExitDatabase, ""},
		{store.ErrForeignSchema, ExitDatabase, ""},
		{store.ErrInvalid, ExitUsage, ""},
		{publish.ErrSigner, ExitSigner, ""},
		{publish.ErrTreeLocked, ExitTreeLocked, "another clr-publish publish, prune or push is running on this tree"},
		{publish.ErrChangedSinceHash, ExitChanged, "a file is still being written: publish again once the upload finished (or use clr-publish watch)"},
		{push.ErrMirror, ExitMirror, "the mirror keeps its previous list; the next publish or push retries"},
	} {
		if errors.Is(err, r.target) {
			return r.code, r.hint
		}
	}
	return 0, ""
}

// isSubscriberOutcome: errors the subscriber ranks above a trust failure
// (their rules come first in Classify).
func isSubscriberOutcome(err error) bool {
	for _, e := range []error{subscriber.ErrIdentifierMismatch, subscriber.ErrEndorserNotLinked, subscriber.ErrRollback,
		subscriber.ErrReplay, subscriber.ErrEndorserUnknown, subscriber.ErrNewImageRefused, subscriber.ErrAlreadySubscribed,
		subscriber.ErrCredentials, transport.ErrDownload, store.ErrRollback, imagelist.ErrInvalidTime, imagelist.ErrInvalidImage,
		subscriber.ErrDNMismatch, subscriber.ErrListExpired, subscriber.ErrCreatedInFuture} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
