// Package imagecmd implements clr-image (vmcatcher_image): list the images
// of the subscriptions and select which ones clr-cache keeps.
package imagecmd

import (
	"fmt"
	"strconv"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/imagelist"
	"github.com/clr-suite/clr/internal/store"
	"github.com/clr-suite/clr/internal/subscriber"
)

// Main runs clr-image and returns its exit code.
func Main(env cli.Env) int {
	return cli.Run(env, newApp(env), cli.Classify)
}

var actions = []cli.Action{
	{Flag: "list", Help: "-l/--list"},
	{Flag: "add", Help: "-a/--add"},
	{Flag: "remove", Help: "-r/--remove"},
	{Flag: "info", Help: "-i/--info"},
}

const description = `Images come from the lists of your subscriptions (clr-subscribe). An image
is cached by clr-cache only once it is selected (-a) and while it is
available (in the latest valid list of an authorised subscription).

-l prints one line per image: <image uuid> TAB <state> TAB <subscription uuid>,
where state is a bit set: 1 = selected for the cache, 2 = available
(0 known, 1 selected, 2 available, 3 selected and available).

Examples:
  clr-image -l
  clr-image -a -u 488dcdc4-9ab1-4fc8-a7ba-b7a5428ecb3d
  clr-image -r -s <sha512>
  clr-image -i -u 488dcdc4-9ab1-4fc8-a7ba-b7a5428ecb3d -f json

The same image UUID in two subscriptions is two images: name the subscription
with --subscription when a selector matches both. Exactly one action per call.`

func newApp(env cli.Env) *ucli.App {
	flags := append(cli.SubscriberFlags(),
		&ucli.BoolFlag{Name: "list", Aliases: []string{"l"}, Usage: "action: list images and their state"},
		&ucli.BoolFlag{Name: "add", Aliases: []string{"a"}, Usage: "action: select the images -u/-s for the cache"},
		&ucli.BoolFlag{Name: "remove", Aliases: []string{"r"}, Usage: "action: unselect the images -u/-s (the next clr-cache run expires them)"},
		&ucli.BoolFlag{Name: "info", Aliases: []string{"i"}, Usage: "action: show the images -u/-s with their list and signer"},
		&ucli.StringSliceFlag{Name: "uuid", Aliases: []string{"u"}, Usage: "image `UUID` (dc:identifier); repeatable"},
		&ucli.StringSliceFlag{Name: "sha512", Aliases: []string{"s"}, Usage: "image `SHA512` (latest, else any earlier version); repeatable"},
		&ucli.StringFlag{Name: "subscription", Usage: "only images of this subscription `UUID` or URL"},
		&ucli.StringFlag{Name: "logfile", Aliases: []string{"L"}, Hidden: true, Usage: "vmcatcher option, ignored: clr logs to stderr"},
		&ucli.StringSliceFlag{Name: "output", Aliases: []string{"o"}, Hidden: true},
		&ucli.StringFlag{Name: "cert-dir", Aliases: []string{"c"}, EnvVars: []string{"CLR_DIR_CERT", "VMCATCHER_DIR_CERT"}, Usage: "accepted for vmcatcher compatibility; -f message checks the stored signature without it"},
	)
	return &ucli.App{
		Name:                      "clr-image",
		Usage:                     "list images and select them for the cache (vmcatcher_image)",
		Description:               description,
		Flags:                     flags,
		DisableSliceFlagSeparator: true,
		Action:                    func(c *ucli.Context) error { return run(env, c) },
	}
}

func run(env cli.Env, c *ucli.Context) error {
	action, err := cli.OneAction(c, actions...)
	if err != nil {
		return err
	}
	format, err := cli.OutputFormat(c)
	if err != nil {
		return err
	}
	var refs []store.ImageRef
	for _, u := range c.StringSlice("uuid") {
		refs = append(refs, store.ImageRef{Subscription: c.String("subscription"), UUID: strings.TrimSpace(u)})
	}
	for _, s := range c.StringSlice("sha512") {
		refs = append(refs, store.ImageRef{Subscription: c.String("subscription"), SHA512: strings.ToLower(strings.TrimSpace(s))})
	}
	if action != "list" && len(refs) == 0 {
		return cli.Usagef("--%s needs an image: -u UUID or -s SHA512", action)
	}
	if action == "list" && len(refs) > 0 {
		return cli.Usagef("--list takes no -u/-s (use --info)")
	}
	if c.IsSet("output") {
		return cli.Usagef("--output is a vmcatcher option clr does not support: redirect standard output instead")
	}
	ctx := c.Context
	st, err := cli.OpenExistingStore(ctx, env, c)
	if err != nil {
		return err
	}
	defer st.Close()

	switch action {
	case "list":
		imgs, err := st.ListImages(ctx, store.ImageFilter{Subscription: c.String("subscription")})
		if err != nil {
			return err
		}
		if format == cli.FormatJSON {
			out := make([]listJSON, 0, len(imgs))
			for _, im := range imgs {
				out = append(out, listJSON{im.UUID, im.State(), im.Subscription})
			}
			return cli.WriteJSON(env.Stdout, out)
		}
		rows := make([][]string, 0, len(imgs))
		for _, im := range imgs {
			rows = append(rows, []string{im.UUID, strconv.Itoa(im.State()), im.Subscription})
		}
		return cli.Lines(env, rows)
	case "add", "remove":
		for _, r := range refs {
			var err error
			if action == "add" {
				_, err = st.SelectImage(ctx, r)
			} else {
				_, err = st.UnselectImage(ctx, r)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	// info
	var docs []infoJSON
	var out strings.Builder
	for _, r := range refs {
		im, err := st.GetImage(ctx, r)
		if err != nil {
			return err
		}
		l, err := st.GetList(ctx, im.Latest.ListID)
		if err != nil {
			return err
		}
		sub, err := st.GetSubscription(ctx, im.Subscription)
		if err != nil {
			return err
		}
		switch format {
		case cli.FormatSMIME:
			out.Write(l.Raw)
		case cli.FormatMessage:
			v, err := subscriber.Verify(l.Raw, subscriber.VerifyOptions{SignatureOnly: true})
			if err != nil {
				return fmt.Errorf("stored list %d of %s: %w", l.ID, sub.UUID, err)
			}
			out.Write(v.Content)
		case cli.FormatJSON:
			docs = append(docs, info(im, sub, l))
		default:
			writeInfoLines(&out, im, sub, l)
		}
	}
	if format == cli.FormatJSON {
		if len(docs) == 1 {
			return cli.WriteJSON(env.Stdout, docs[0])
		}
		return cli.WriteJSON(env.Stdout, docs)
	}
	_, err = fmt.Fprint(env.Stdout, out.String())
	return err
}

type listJSON struct {
	Image        string `json:"image"`
	State        int    `json:"state"`
	Subscription string `json:"subscription"`
}

type infoJSON struct {
	ImageDef     map[string]any `json:"imagedef"`
	Image        map[string]any `json:"image"`
	ImageList    map[string]any `json:"imagelist"`
	Subscription map[string]any `json:"subscription"`
	Endorser     map[string]any `json:"endorser"`
}

func imageFields(im store.ImageInstance) [][2]string {
	f := [][2]string{
		{"dc:identifier", im.Identifier},
		{"dc:title", im.Title},
		{"dc:description", im.Description},
		{"hv:uri", im.URI},
		{"hv:size", strconv.FormatInt(im.Size, 10)},
		{"hv:version", im.Version},
		{"sl:checksum:sha512", im.SHA512},
		{"hv:hypervisor", im.Hypervisor},
		{"sl:arch", im.Arch},
		{"sl:os", im.OS},
		{"sl:osversion", im.OSVersion},
		{"sl:comments", im.Comments},
	}
	if im.Format != "" {
		f = append(f, [2]string{"hv:format", im.Format})
	}
	return f
}

func listFields(l store.ListInstance) [][2]string {
	return [][2]string{
		{"hv:version", l.Version},
		{"dc:date:created", imagelist.FormatTime(l.Created)},
		{"dc:date:expires", imagelist.FormatTime(l.Expires)},
		{"dc:date:imported", imagelist.FormatTime(l.Imported)},
		{"expired", cli.PyBool(l.Expired)},
		{"revoked", cli.PyBool(l.Revoked)},
		{"sha512", l.SHA512},
	}
}

func writeInfoLines(b *strings.Builder, im store.Image, sub store.Subscription, l store.ListInstance) {
	fmt.Fprintf(b, "imagedef.dc:identifier=%s\nimagedef.cache=%d\nimagedef.state=%d\n", cli.Clean(im.UUID), boolInt(im.Selected), im.State())
	for _, kv := range imageFields(im.Latest) {
		fmt.Fprintf(b, "image.%s=%s\n", cli.Clean(kv[0]), cli.Clean(kv[1]))
	}
	fmt.Fprintf(b, "imagelist.dc:identifier=%s\n", cli.Clean(sub.UUID))
	for _, kv := range listFields(l) {
		fmt.Fprintf(b, "imagelist.%s=%s\n", cli.Clean(kv[0]), cli.Clean(kv[1]))
	}
	fmt.Fprintf(b, "subscription.dc:identifier=%s\nsubscription.hv:uri=%s\nsubscription.sl:authorised=%s\n", cli.Clean(sub.UUID), cli.Clean(sub.URL), cli.Clean(cli.PyBool(sub.Authorised)))
	fmt.Fprintf(b, "endorser.hv:dn=%s\nendorser.hv:ca=%s\n", cli.Clean(l.SignerDN), cli.Clean(l.IssuerDN))
}

func info(im store.Image, sub store.Subscription, l store.ListInstance) infoJSON {
	toMap := func(kvs [][2]string) map[string]any {
		m := map[string]any{}
		for _, kv := range kvs {
			m[kv[0]] = kv[1]
		}
		return m
	}
	img := toMap(imageFields(im.Latest))
	img["hv:size"] = im.Latest.Size
	lst := toMap(listFields(l))
	lst["dc:identifier"] = sub.UUID
	lst["expired"], lst["revoked"] = l.Expired, l.Revoked
	return infoJSON{
		ImageDef:     map[string]any{"dc:identifier": im.UUID, "cache": boolInt(im.Selected), "state": im.State(), "available": im.Available},
		Image:        img,
		ImageList:    lst,
		Subscription: map[string]any{"dc:identifier": sub.UUID, "hv:uri": sub.URL, "sl:authorised": sub.Authorised},
		Endorser:     map[string]any{"hv:dn": l.SignerDN, "hv:ca": l.IssuerDN},
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
