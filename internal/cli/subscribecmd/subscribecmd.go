// Package subscribecmd implements clr-subscribe (vmcatcher_subscribe):
// subscribe to signed image lists and keep them current.
package subscribecmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/clr-suite/clr/events"
	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/hooks"
	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/store"
	"github.com/clr-suite/clr/internal/subscriber"
	"github.com/clr-suite/clr/internal/transport"
	"github.com/clr-suite/clr/internal/trust"
)

// Main runs clr-subscribe and returns its exit code.
func Main(env cli.Env) int {
	return cli.Run(env, newApp(env), classify)
}

// classify adds the subscriber's vmcatcher codes to the suite's.
func classify(err error) (int, string) {
	if code, hint := cli.Classify(err); code != 0 {
		return code, hint
	}
	if code := subscriber.ExitCode(err); code != 1 {
		return code, ""
	}
	return 0, ""
}

// DefaultCertDir is vmcatcher's default CA directory.
const DefaultCertDir = "/etc/grid-security/certificates"

const description = `A subscription follows one signed image list (a HEPiX/vmcatcher list signed
with S/MIME). Subscribing checks the signature against the CA directory (-c),
finds the endorser whose certificate signed it (clr-endorser, or
--auto-endorse to trust and record this signer now) and stores the list. -U
downloads every subscription's list again and accepts it only if it is
signed by a linked endorser, not expired, not a rollback, and for the same
list identifier.

Examples (vmcatcher's quick start):
  clr-subscribe -s file:///tmp/imagelist.smime --auto-endorse
  clr-subscribe -U
  clr-subscribe -l
  clr-subscribe -i -u 63175437-7d59-4851-b333-c96cb6545a86 -f message

Exit codes of -U are vmcatcher's (the last failing subscription's): 10
download, 11 signature, 12 DN mismatch, 13 endorser not linked, 17 rollback,
31 identifier mismatch, 32 new image refused, 33 created in future, 34
expired, 37 not JSON, 38 not an image list; see docs/exit-codes.md.

Exactly one action per call: -s, -U, -l, -i, -D or --reset-floor (the
--imagelist-newimage-* options alone change the selected subscriptions).`

func newApp(env cli.Env) *ucli.App {
	flags := append(cli.SubscriberFlags(),
		&ucli.StringSliceFlag{Name: "subscribe", Aliases: []string{"s"}, Usage: "action: subscribe to the list at `URL` (file://, http://, https://); repeatable"},
		&ucli.BoolFlag{Name: "update", Aliases: []string{"U"}, Usage: "action: download and apply the lists of all (or the selected) subscriptions"},
		&ucli.BoolFlag{Name: "list", Aliases: []string{"l"}, Usage: "action: list subscriptions: <uuid> TAB <authorised> TAB <trust anchor> TAB <url>"},
		&ucli.BoolFlag{Name: "info", Aliases: []string{"i"}, Usage: "action: show the selected (default all) subscriptions and their latest list"},
		&ucli.BoolFlag{Name: "delete", Aliases: []string{"D"}, Usage: "action: delete the selected subscriptions with their lists and images"},
		&ucli.BoolFlag{Name: "reset-floor", Usage: "action: forget the selected subscriptions' rollback floor (R7), so an older list can be accepted once"},
		&ucli.StringSliceFlag{Name: "uuid", Aliases: []string{"u"}, Usage: "select the subscription `UUID` (the list's dc:identifier); repeatable"},
		&ucli.StringSliceFlag{Name: "uri", Aliases: []string{"r"}, Usage: "select the subscription with `URL`; repeatable"},
		&ucli.BoolFlag{Name: "auto-endorse", Aliases: []string{"e"}, Usage: "with -s: trust the list's signer, creating and linking an endorser for it"},
		&ucli.StringFlag{Name: "cert-dir", Aliases: []string{"c"}, Value: DefaultCertDir, EnvVars: []string{"CLR_DIR_CERT", "VMCATCHER_DIR_CERT"}, Usage: "CA `DIR` (<hash>.0 certificates, <hash>.r0 CRLs); also trusted for HTTPS servers"},
		&ucli.StringFlag{Name: "crl", Value: "require", Usage: "CRL policy: require, if-present or ignore"},
		&ucli.StringFlag{Name: "purpose", Value: "smime", Usage: "signer key usage: smime or any (any accepts host certificates, as AppDB's)"},
		&ucli.BoolFlag{Name: "imagelist-newimage-accept", Usage: "images a list adds are created, not selected"},
		&ucli.BoolFlag{Name: "imagelist-newimage-subscribe", Usage: "images a list adds are created and selected for the cache (with -s: all images)"},
		&ucli.BoolFlag{Name: "imagelist-newimage-refuse", Usage: "images a list adds are refused, -U exits 32 (the default)"},
		&ucli.StringFlag{Name: "execute", Aliases: []string{"x"}, EnvVars: []string{"CLR_SUB_EVENT", "VMCATCHER_SUB_EVENT"}, Usage: "run `CMD` (with /bin/sh) for every SubscriptionImageNew event; values in CLR_EVENT_*/VMCATCHER_EVENT_* and JSON on stdin"},
		&ucli.DurationFlag{Name: "hook-timeout", Value: hooks.DefaultTimeout, Usage: "kill a hook after this `DURATION`"},
		&ucli.StringFlag{Name: "credentials", Usage: "with -s: HTTP basic credentials `REF`, file:/path or env:NAME holding user:password (never the secret itself)"},
		&ucli.DurationFlag{Name: "timeout", Value: 60 * time.Second, Usage: "give up a download after `DURATION`"},
		// vmcatcher options: accepted so cron lines keep working ...
		&ucli.StringFlag{Name: "uri-trustanchor-set", Hidden: true, Usage: "ignored: HTTPS servers are always verified"},
		// ... or refused with what to do instead (unsupported)
		&ucli.StringFlag{Name: "uri-username-set", Hidden: true},
		&ucli.StringFlag{Name: "uri-password-set", Hidden: true},
		&ucli.BoolFlag{Name: "uri-username-clear", Hidden: true},
		&ucli.BoolFlag{Name: "uri-password-clear", Hidden: true},
		&ucli.BoolFlag{Name: "image-list", Hidden: true},
		&ucli.StringSliceFlag{Name: "image-accept", Hidden: true},
		&ucli.StringSliceFlag{Name: "image-refuse", Hidden: true},
		&ucli.StringSliceFlag{Name: "output", Aliases: []string{"o"}, Hidden: true},
	)
	return &ucli.App{
		Name:                      "clr-subscribe",
		Usage:                     "subscribe to signed image lists and update them (vmcatcher_subscribe)",
		Description:               description,
		Flags:                     flags,
		DisableSliceFlagSeparator: true,
		Action:                    func(c *ucli.Context) error { return run(env, c) },
	}
}

func action(c *ucli.Context) (string, error) {
	var set []string
	if len(c.StringSlice("subscribe")) > 0 {
		set = append(set, "subscribe")
	}
	for _, a := range []string{"update", "list", "info", "delete", "reset-floor"} {
		if c.Bool(a) {
			set = append(set, a)
		}
	}
	switch len(set) {
	case 0:
		if _, ok, _ := newImageMode(c); ok || c.IsSet("credentials") {
			return "set", nil
		}
		return "", cli.Usagef("no action selected: choose one of -s/--subscribe, -U/--update, -l/--list, -i/--info, -D/--delete, --reset-floor")
	case 1:
		return set[0], nil
	}
	return "", cli.Usagef("more than one action selected (--%s): choose one", strings.Join(set, ", --"))
}

// newImageMode returns the update mode the --imagelist-newimage-* flags
// set, and whether one was given.
func newImageMode(c *ucli.Context) (store.UpdateMode, bool, error) {
	var modes []store.UpdateMode
	if c.Bool("imagelist-newimage-accept") {
		modes = append(modes, store.NewImagesAccept)
	}
	if c.Bool("imagelist-newimage-subscribe") {
		modes = append(modes, store.NewImagesSubscribe)
	}
	if c.Bool("imagelist-newimage-refuse") {
		modes = append(modes, store.NewImagesRefuse)
	}
	switch len(modes) {
	case 0:
		return store.NewImagesRefuse, false, nil
	case 1:
		return modes[0], true, nil
	}
	return 0, true, cli.Usagef("choose one of --imagelist-newimage-accept, -subscribe and -refuse")
}

func run(env cli.Env, c *ucli.Context) error {
	if err := unsupported(c); err != nil {
		return err
	}
	act, err := action(c)
	if err != nil {
		return err
	}
	mode, modeSet, err := newImageMode(c)
	if err != nil {
		return err
	}
	format, err := cli.OutputFormat(c)
	if err != nil {
		return err
	}
	credSet := c.IsSet("credentials")
	cred := strings.TrimSpace(c.String("credentials"))
	if credSet {
		// Checked before anything is fetched; the value may be a pasted
		// secret, so the error does not repeat it.
		if err := store.CheckCredentialRef(cred); err != nil {
			return cli.Usagef("--credentials: want file:/absolute/path or env:NAME (\"\" to clear)")
		}
		if act != "subscribe" && act != "set" {
			return cli.Usagef("--credentials goes with -s URL, or alone with -u/-r to change a subscription's")
		}
	}
	selectors := append(append([]string(nil), c.StringSlice("uuid")...), c.StringSlice("uri")...)
	if (act == "delete" || act == "reset-floor" || act == "set") && len(selectors) == 0 {
		return cli.Usagef("--%s needs a subscription: -u UUID or -r URL", act)
	}
	if act == "subscribe" && len(selectors) > 0 {
		return cli.Usagef("--subscribe takes URLs, not -u/-r")
	}
	ctx := c.Context
	now := env.Now()
	log := env.Logger(c.Count("verbose"), c.Count("quiet"))
	var st *store.Store
	if act == "list" || act == "info" || act == "delete" || act == "reset-floor" || act == "set" {
		st, err = cli.OpenExistingStore(ctx, env, c)
	} else {
		st, err = cli.OpenStore(ctx, env, c)
	}
	if err != nil {
		return err
	}
	defer st.Close()

	switch act {
	case "list":
		return list(env, c, st, format)
	case "info":
		return info(env, c, st, format, selectors)
	case "delete":
		for _, key := range selectors {
			imgs, err := st.DeleteSubscription(ctx, key)
			if err != nil {
				return err
			}
			log.Info("subscription deleted", "subscription", key, "images", len(imgs))
		}
		return nil
	case "reset-floor":
		for _, key := range selectors {
			old, err := st.ResetFloor(ctx, key)
			if err != nil {
				return err
			}
			log.Warn("rollback floor reset: the next list is accepted whatever its version", "subscription", key,
				"old_version", old.Version, "old_created", imagelist.FormatTime(old.Created))
		}
		return nil
	case "set":
		if modeSet {
			if err := setMode(ctx, st, selectors, mode, log); err != nil {
				return err
			}
		}
		if credSet {
			for _, key := range selectors {
				if _, err := st.UpdateSubscription(ctx, key, store.SubscriptionUpdate{CredentialRef: &cred}); err != nil {
					return err
				}
				log.Info("credentials reference set", "subscription", key, "credentials", cred)
			}
		}
		return nil
	}

	// subscribe and update verify lists.
	wf, err := workflow(env, c, st, now, log)
	if err != nil {
		return err
	}
	if act == "subscribe" {
		for _, u := range c.StringSlice("subscribe") {
			res, err := wf.Subscribe(ctx, subscriber.SubscribeOptions{
				URL: u, AutoEndorse: c.Bool("auto-endorse"), Mode: mode, CredentialRef: cred,
			})
			if err != nil {
				return fmt.Errorf("subscribe to %s: %w", transport.Redact(u), err)
			}
			for _, w := range res.Warnings {
				log.Warn(w, "subscription", res.Subscription.UUID)
			}
			switch {
			case res.Existing:
				log.Warn("already subscribed", "url", u, "subscription", res.Subscription.UUID)
				if modeSet {
					if err := setMode(ctx, st, []string{res.Subscription.UUID}, mode, log); err != nil {
						return err
					}
				}
				if credSet {
					if _, err := st.UpdateSubscription(ctx, res.Subscription.UUID, store.SubscriptionUpdate{CredentialRef: &cred}); err != nil {
						return err
					}
					log.Info("credentials reference set", "subscription", res.Subscription.UUID, "credentials", cred)
				}
			default:
				if res.NewEndorser != "" {
					log.Warn("endorser added to database and linked", "endorser", res.NewEndorser,
						"subject", res.Subscription.LatestList.SignerDN, "issuer", res.Subscription.LatestList.IssuerDN)
				}
				log.Info("subscribed", "subscription", res.Subscription.UUID, "url", u, "images", len(res.Accept.New))
			}
		}
		return nil
	}
	// update
	if modeSet {
		keys := selectors
		if len(keys) == 0 {
			subs, err := st.ListSubscriptions(ctx)
			if err != nil {
				return err
			}
			for _, s := range subs {
				keys = append(keys, s.UUID)
			}
		}
		if err := setMode(ctx, st, keys, mode, log); err != nil {
			return err
		}
		// vmcatcher re-processed the lists when the mode changed, so
		// images refused before (exit 32) are created now.
		wf.Reprocess = true
	}
	return update(ctx, st, wf, selectors, log)
}

func setMode(ctx context.Context, st *store.Store, keys []string, mode store.UpdateMode, log *slog.Logger) error {
	for _, key := range keys {
		if _, err := st.UpdateSubscription(ctx, key, store.SubscriptionUpdate{UpdateMode: &mode}); err != nil {
			return err
		}
		log.Info("new images mode set", "subscription", key, "mode", mode.String())
	}
	return nil
}

func workflow(env cli.Env, c *ucli.Context, st *store.Store, now time.Time, log *slog.Logger) (*subscriber.Workflow, error) {
	pol, err := cli.TrustPolicy(c, now)
	if err != nil {
		return nil, err
	}
	ts, err := trust.Load(c.String("cert-dir"))
	if err != nil {
		// Nothing can verify without CAs: a trust failure (11) with the
		// hint to point -c at them, whatever the file system said.
		if !errors.Is(err, trust.ErrNoCAs) {
			err = fmt.Errorf("%w: %v", trust.ErrNoCAs, err)
		}
		return nil, fmt.Errorf("cert dir %s: %w", c.String("cert-dir"), err)
	}
	for _, p := range ts.Problems() {
		log.Debug("CA directory", "problem", p)
	}
	roots := cli.HTTPSRoots(ts)
	wf := &subscriber.Workflow{
		Store: st, Trust: ts, Policy: pol, RootCAs: roots, Timeout: c.Duration("timeout"),
		Getenv: env.Getenv, Logger: log, Session: cli.SessionID(),
	}
	if cmd := c.String("execute"); cmd != "" {
		environ, err := hookEnviron(c.Context, st)
		if err != nil {
			return nil, err
		}
		r := hooks.Runner{Command: cmd, Timeout: c.Duration("hook-timeout"), Environ: environ}
		wf.Hook = func(ctx context.Context, ev events.Event) error {
			res, err := r.Run(ctx, ev)
			if err == nil {
				log.Info("hook ran", "event", ev.Type, "image", ev.Image.Identifier, "duration", res.Duration)
			}
			return err
		}
	}
	return wf, nil
}

// hookEnviron is the process environment without the variables that
// subscriptions name as credential references (env:NAME): a hook never
// sees a list password.
func hookEnviron(ctx context.Context, st *store.Store) ([]string, error) {
	subs, err := st.ListSubscriptions(ctx)
	if err != nil {
		return nil, err
	}
	secret := map[string]bool{}
	for _, s := range subs {
		if name, ok := strings.CutPrefix(s.CredentialRef, "env:"); ok {
			secret[name] = true
		}
	}
	var out []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !secret[name] {
			out = append(out, kv)
		}
	}
	return out, nil
}

// unsupported gives vmcatcher options clr does not take a message that
// says what to do instead (they are hidden flags, so a cron line using
// them fails with this line, not with "flag provided but not defined").
func unsupported(c *ucli.Context) error {
	for _, u := range []struct{ flag, instead string }{
		{"uri-username-set", "clr never stores credentials: put user:password in a file and pass --credentials file:/path -u UUID"},
		{"uri-password-set", "clr never stores credentials: put user:password in a file and pass --credentials file:/path -u UUID"},
		{"uri-username-clear", "use --credentials \"\" -u UUID"},
		{"uri-password-clear", "use --credentials \"\" -u UUID"},
		{"image-list", "use clr-image -l --subscription UUID"},
		{"image-accept", "use clr-image -a -u IMAGE"},
		{"image-refuse", "use clr-image -r -u IMAGE"},
		{"output", "redirect standard output instead (clr-subscribe -i -u UUID -f SMIME > FILE)"},
	} {
		if c.IsSet(u.flag) {
			return cli.Usagef("--%s is a vmcatcher option clr does not support: %s", u.flag, u.instead)
		}
	}
	return nil
}

// update runs -U over the selected subscriptions (all by default). Each
// failure is logged; the exit code is the last failure's, as in vmcatcher.
func update(ctx context.Context, st *store.Store, wf *subscriber.Workflow, keys []string, log *slog.Logger) error {
	if len(keys) == 0 {
		subs, err := st.ListSubscriptions(ctx)
		if err != nil {
			return err
		}
		for _, s := range subs {
			keys = append(keys, s.UUID)
		}
	}
	var last error
	for _, key := range keys {
		res, err := wf.Update(ctx, key)
		for _, w := range res.Warnings {
			log.Warn(w, "subscription", res.Subscription)
		}
		if errors.Is(err, context.Canceled) {
			return err
		}
		recordAttempt(ctx, st, key, wf.Policy.Time, err, log)
		if err != nil {
			if last != nil {
				log.Error(last.Error())
			}
			last = err
			continue
		}
		switch res.Action {
		case subscriber.Accept:
			log.Info("updated", "subscription", res.Subscription, "version", res.Version,
				"new", len(res.Accept.New), "updated", len(res.Accept.Updated), "dropped", len(res.Accept.Dropped))
		case subscriber.NoOp:
			log.Debug("same version", "subscription", res.Subscription, "version", res.Version)
		}
	}
	if last != nil {
		code, hint := cli.ExitCode(last, classify)
		return &cli.ExitError{Code: code, Err: last, Hint: hint}
	}
	return nil
}

// recordAttempt keeps the outcome for /metrics and -i (a failure to record
// is only logged: it never changes the update's result).
func recordAttempt(ctx context.Context, st *store.Store, key string, at time.Time, err error, log *slog.Logger) {
	a := store.Attempt{At: at}
	if err != nil {
		a.ExitCode, _ = cli.ExitCode(err, classify)
		a.Error = strings.SplitN(err.Error(), "\n", 2)[0]
	}
	if rerr := st.RecordAttempt(context.WithoutCancel(ctx), key, a); rerr != nil && !errors.Is(rerr, store.ErrNotFound) {
		log.Warn("update result not recorded", "subscription", key, "err", rerr)
	}
}

func trustAnchor(url string) string {
	if strings.HasPrefix(strings.ToLower(url), "https:") {
		return "Browser"
	}
	return "None"
}

type subJSON struct {
	Identifier    string    `json:"dc:identifier"`
	Description   string    `json:"dc:description"`
	Authorised    bool      `json:"sl:authorised"`
	URI           string    `json:"hv:uri"`
	TrustAnchor   string    `json:"hv:uri.trustAnchor"`
	CredentialRef string    `json:"credentials,omitempty"`
	Updated       string    `json:"dc:date:updated,omitempty"`
	UpdateMode    int       `json:"updateMode"`
	NewImages     string    `json:"newImages"`
	FloorVersion  string    `json:"floor.hv:version,omitempty"`
	FloorCreated  string    `json:"floor.dc:date:created,omitempty"`
	List          *listJSON `json:"imagelist,omitempty"`
}

// listJSON is a subscription's latest accepted list in -f json output.
type listJSON struct {
	Version  string `json:"hv:version"`
	Created  string `json:"dc:date:created"`
	Expires  string `json:"dc:date:expires"`
	Imported string `json:"dc:date:imported"`
	Expired  bool   `json:"expired"`
	Revoked  bool   `json:"revoked"`
	SignerDN string `json:"hv:dn"`
	IssuerDN string `json:"hv:ca"`
	SHA512   string `json:"sha512"`
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return imagelist.FormatTime(t)
}

func toJSON(s store.Subscription) subJSON {
	out := subJSON{
		Identifier: s.UUID, Description: s.Description, Authorised: s.Authorised, URI: s.URL,
		TrustAnchor: trustAnchor(s.URL), CredentialRef: s.CredentialRef, Updated: fmtTime(s.Updated),
		UpdateMode: int(s.UpdateMode), NewImages: s.UpdateMode.String(),
		FloorVersion: s.Floor.Version, FloorCreated: fmtTime(s.Floor.Created),
	}
	if l := s.LatestList; l != nil {
		out.List = &listJSON{l.Version, fmtTime(l.Created), fmtTime(l.Expires), fmtTime(l.Imported), l.Expired, l.Revoked, l.SignerDN, l.IssuerDN, l.SHA512}
	}
	return out
}

func list(env cli.Env, c *ucli.Context, st *store.Store, format string) error {
	subs, err := st.ListSubscriptions(c.Context)
	if err != nil {
		return err
	}
	if format == cli.FormatJSON {
		out := make([]subJSON, 0, len(subs))
		for _, s := range subs {
			out = append(out, toJSON(s))
		}
		return cli.WriteJSON(env.Stdout, out)
	}
	// lines; message and SMIME print signed lists, which only -i shows
	rows := make([][]string, 0, len(subs))
	for _, s := range subs {
		rows = append(rows, []string{s.UUID, cli.PyBool(s.Authorised), trustAnchor(s.URL), s.URL})
	}
	return cli.Lines(env, rows)
}

func info(env cli.Env, c *ucli.Context, st *store.Store, format string, keys []string) error {
	ctx := c.Context
	var subs []store.Subscription
	if len(keys) == 0 {
		var err error
		if subs, err = st.ListSubscriptions(ctx); err != nil {
			return err
		}
	}
	for _, k := range keys {
		s, err := st.GetSubscription(ctx, k)
		if err != nil {
			return err
		}
		subs = append(subs, s)
	}
	var b strings.Builder
	var docs []subJSON
	for _, s := range subs {
		switch format {
		case cli.FormatJSON:
			docs = append(docs, toJSON(s))
			continue
		case cli.FormatSMIME, cli.FormatMessage:
			if s.LatestList == nil {
				return fmt.Errorf("subscription %s has no accepted list: %w", s.UUID, store.ErrNotFound)
			}
			l, err := st.LatestList(ctx, s.UUID)
			if err != nil {
				return err
			}
			if format == cli.FormatSMIME {
				b.Write(l.Raw)
				continue
			}
			// The stored bytes were fully verified when accepted; here
			// the signature proves they were not changed since.
			v, err := subscriber.Verify(l.Raw, subscriber.VerifyOptions{SignatureOnly: true})
			if err != nil {
				return fmt.Errorf("stored list of %s: %w", s.UUID, err)
			}
			b.Write(v.Content)
			continue
		}
		fmt.Fprintf(&b, "imagelist.dc:identifier=%s\n", cli.Clean(s.UUID))
		fmt.Fprintf(&b, "subscription.dc:identifier=%s\n", cli.Clean(s.UUID))
		fmt.Fprintf(&b, "subscription.dc:description=%s\n", cli.Clean(s.Description))
		fmt.Fprintf(&b, "subscription.sl:authorised=%s\n", cli.Clean(cli.PyBool(s.Authorised)))
		fmt.Fprintf(&b, "subscription.hv:uri=%s\n", cli.Clean(s.URL))
		fmt.Fprintf(&b, "subscription.hv:uri.trustAnchor=%s\n", cli.Clean(trustAnchor(s.URL)))
		if s.CredentialRef != "" {
			fmt.Fprintf(&b, "subscription.hv:uri.credentials=%s\n", cli.Clean(s.CredentialRef))
		}
		fmt.Fprintf(&b, "subscription.dc:date:updated=%s\n", cli.Clean(fmtTime(s.Updated)))
		fmt.Fprintf(&b, "subscription.updateMode=%d\n", int(s.UpdateMode))
		fmt.Fprintf(&b, "subscription.floor.hv:version=%s\n", cli.Clean(s.Floor.Version))
		fmt.Fprintf(&b, "subscription.floor.dc:date:created=%s\n", cli.Clean(fmtTime(s.Floor.Created)))
		if l := s.LatestList; l != nil {
			fmt.Fprintf(&b, "imagelist.hv:version=%s\n", cli.Clean(l.Version))
			expired := ""
			if l.Expired || l.Revoked {
				expired = fmtTime(l.InvalidatedAt)
			}
			fmt.Fprintf(&b, "imagelist.expired=%s\n", cli.Clean(expired))
			fmt.Fprintf(&b, "imagelist.revoked=%s\n", cli.Clean(cli.PyBool(l.Revoked)))
			fmt.Fprintf(&b, "imagelist.dc:date:imported=%s\n", cli.Clean(fmtTime(l.Imported)))
			fmt.Fprintf(&b, "imagelist.dc:date:created=%s\n", cli.Clean(fmtTime(l.Created)))
			fmt.Fprintf(&b, "imagelist.dc:date:expires=%s\n", cli.Clean(fmtTime(l.Expires)))
			fmt.Fprintf(&b, "imagelist.hv:dn=%s\nimagelist.hv:ca=%s\n", cli.Clean(l.SignerDN), cli.Clean(l.IssuerDN))
		}
	}
	if format == cli.FormatJSON {
		if len(keys) == 1 && len(docs) == 1 {
			return cli.WriteJSON(env.Stdout, docs[0])
		}
		if docs == nil {
			docs = []subJSON{}
		}
		return cli.WriteJSON(env.Stdout, docs)
	}
	_, err := fmt.Fprint(env.Stdout, b.String())
	return err
}
