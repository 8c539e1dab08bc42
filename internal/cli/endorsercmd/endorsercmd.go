// Package endorsercmd implements clr-endorser (vmcatcher_endorser): the
// trusted signers of image lists and their links to subscriptions.
package endorsercmd

import (
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/clr-suite/clr/internal/cli"
	"github.com/clr-suite/clr/internal/store"
)

// Main runs clr-endorser and returns its exit code.
func Main(env cli.Env) int {
	return cli.Run(env, newApp(env), cli.Classify)
}

var actions = []cli.Action{
	{Flag: "list", Help: "-l/--list"},
	{Flag: "links", Help: "-K/--links"},
	{Flag: "create", Help: "-C/--create"},
	{Flag: "delete", Help: "-D/--delete"},
	{Flag: "link", Help: "-k/--link"},
	{Flag: "unlink", Help: "-u/--unlink"},
	{Flag: "info", Help: "-i/--info"},
}

const description = `An endorser is a trusted signer of image lists: a name (-e) and the
certificate subject and issuer DNs it signs with, in OpenSSL one-line form
(/DC=org/DC=example/CN=Jane Doe). A list is accepted for a subscription only
when its signer is a principal of an endorser linked to that subscription.

Examples:
  clr-endorser --create -e jane --dn '/DC=org/CN=Jane' -I '/DC=org/CN=Example CA'
  clr-endorser --link -e jane -s 63175437-7d59-4851-b333-c96cb6545a86
  clr-endorser -l
  clr-endorser -K -f json

Exactly one action per call.`

func newApp(env cli.Env) *ucli.App {
	flags := append(cli.SubscriberFlags(),
		&ucli.BoolFlag{Name: "list", Aliases: []string{"l"}, Usage: "action: list endorsers and their subject/issuer DNs"},
		&ucli.BoolFlag{Name: "links", Aliases: []string{"K"}, Usage: "action: list endorser-subscription links (filtered by -e / -s)"},
		&ucli.BoolFlag{Name: "create", Aliases: []string{"C"}, Usage: "action: create endorser -e with --dn and --issuer (again with another DN pair: add a principal)"},
		&ucli.BoolFlag{Name: "delete", Aliases: []string{"D"}, Usage: "action: delete endorser -e and its links"},
		&ucli.BoolFlag{Name: "link", Aliases: []string{"k"}, Usage: "action: authorise endorser -e to sign subscription -s"},
		&ucli.BoolFlag{Name: "unlink", Aliases: []string{"u"}, Usage: "action: remove the link of endorser -e and subscription -s"},
		&ucli.BoolFlag{Name: "info", Aliases: []string{"i"}, Usage: "action: show endorser -e, its DNs and links"},
		&ucli.StringFlag{Name: "endorser_uuid", Aliases: []string{"e", "endorser-uuid"}, Usage: "endorser `ID` (any name you choose)"},
		&ucli.StringFlag{Name: "dn", Aliases: []string{"S", "subject"}, Usage: "signer certificate subject `DN` (-S/--subject is vmcatcher's older spelling)"},
		&ucli.StringFlag{Name: "issuer", Aliases: []string{"I"}, Usage: "signer certificate issuer `DN`"},
		&ucli.StringFlag{Name: "subscription_uuid", Aliases: []string{"s", "subscription-uuid"}, Usage: "subscription `UUID` (the list's dc:identifier) or URL"},
	)
	return &ucli.App{
		Name:        "clr-endorser",
		Usage:       "manage the endorsers trusted to sign image lists (vmcatcher_endorser)",
		Description: description,
		Flags:       flags,
		Action:      func(c *ucli.Context) error { return run(env, c) },
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
	if format == cli.FormatMessage || format == cli.FormatSMIME {
		// These formats print signed lists; endorsers have none. A site
		// that sets VMCATCHER_OUTPUT_FORMAT for all commands gets lines.
		format = cli.FormatLines
	}
	id := strings.TrimSpace(c.String("endorser_uuid"))
	sub := strings.TrimSpace(c.String("subscription_uuid"))
	need := func(names ...string) error {
		for _, n := range names {
			if strings.TrimSpace(c.String(n)) == "" {
				return cli.Usagef("--%s needs --%s", action, n)
			}
		}
		return nil
	}
	switch action {
	case "create":
		err = need("endorser_uuid", "dn", "issuer")
	case "delete", "info":
		err = need("endorser_uuid")
	case "link", "unlink":
		err = need("endorser_uuid", "subscription_uuid")
	}
	if err != nil {
		return err
	}
	ctx := c.Context
	open := cli.OpenExistingStore
	if action == "create" {
		open = cli.OpenStore
	}
	st, err := open(ctx, env, c)
	if err != nil {
		return err
	}
	defer st.Close()
	log := env.Logger(c.Count("verbose"), c.Count("quiet"))

	switch action {
	case "list":
		es, err := st.ListEndorsers(ctx)
		if err != nil {
			return err
		}
		if format == cli.FormatJSON {
			out := make([]endorserJSON, 0, len(es))
			for _, e := range es {
				out = append(out, toJSON(e, nil))
			}
			return cli.WriteJSON(env.Stdout, out)
		}
		var rows [][]string
		for _, e := range es {
			for _, p := range e.Principals {
				rows = append(rows, []string{quote(e.UUID), quote(p.SubjectDN), quote(p.IssuerDN)})
			}
		}
		return cli.Lines(env, rows)
	case "links":
		ls, err := st.Links(ctx, id, sub)
		if err != nil {
			return err
		}
		if format == cli.FormatJSON {
			out := make([]linkJSON, 0, len(ls))
			for _, l := range ls {
				out = append(out, linkJSON{l.Endorser, l.Subscription, l.Authorised})
			}
			return cli.WriteJSON(env.Stdout, out)
		}
		var rows [][]string
		for _, l := range ls {
			rows = append(rows, []string{quote(l.Endorser), quote(l.Subscription), quote(cli.PyBool(l.Authorised))})
		}
		return cli.Lines(env, rows)
	case "create":
		p := store.Principal{SubjectDN: c.String("dn"), IssuerDN: c.String("issuer")}
		if _, err := st.GetEndorser(ctx, id); err == nil {
			// vmcatcher adds a principal to an existing endorser.
			if err := st.AddPrincipal(ctx, id, p); err != nil {
				return err
			}
			log.Info("principal added", "endorser", id, "subject", p.SubjectDN, "issuer", p.IssuerDN)
			return nil
		}
		if err := st.CreateEndorser(ctx, store.Endorser{UUID: id, Principals: []store.Principal{p}}); err != nil {
			return err
		}
		log.Info("endorser created", "endorser", id)
		return nil
	case "delete":
		return st.DeleteEndorser(ctx, id)
	case "link":
		return st.Link(ctx, id, sub)
	case "unlink":
		return st.Unlink(ctx, id, sub)
	case "info":
		e, err := st.GetEndorser(ctx, id)
		if err != nil {
			return err
		}
		ls, err := st.Links(ctx, id, "")
		if err != nil {
			return err
		}
		if format == cli.FormatJSON {
			return cli.WriteJSON(env.Stdout, toJSON(e, ls))
		}
		var b strings.Builder
		fmt.Fprintf(&b, "endorser.dc:identifier=%s\n", cli.Clean(e.UUID))
		for _, p := range e.Principals {
			fmt.Fprintf(&b, "endorser.hv:dn=%s\nendorser.hv:ca=%s\n", cli.Clean(p.SubjectDN), cli.Clean(p.IssuerDN))
		}
		for _, l := range ls {
			fmt.Fprintf(&b, "subscription.dc:identifier=%s\nsubscription.sl:authorised=%s\n", cli.Clean(l.Subscription), cli.Clean(cli.PyBool(l.Authorised)))
		}
		_, err = fmt.Fprint(env.Stdout, b.String())
		return err
	}
	return fmt.Errorf("unhandled action %s", action)
}

type principalJSON struct {
	Subject string `json:"subject"`
	Issuer  string `json:"issuer"`
}

// endorserJSON keeps vmcatcher's keys ("princibles" is its spelling) and
// adds the correctly spelled "principals" with the same content.
type endorserJSON struct {
	Endorser      string          `json:"endorser"`
	Princibles    []principalJSON `json:"princibles"`
	Principals    []principalJSON `json:"principals"`
	Subscriptions []string        `json:"subscriptions,omitempty"`
}

type linkJSON struct {
	Endorser     string `json:"endorser"`
	Subscription string `json:"subscription"`
	Authorised   bool   `json:"authorised"`
}

func toJSON(e store.Endorser, links []store.Link) endorserJSON {
	ps := make([]principalJSON, 0, len(e.Principals))
	for _, p := range e.Principals {
		ps = append(ps, principalJSON{p.SubjectDN, p.IssuerDN})
	}
	out := endorserJSON{Endorser: e.UUID, Princibles: ps, Principals: ps}
	for _, l := range links {
		out.Subscriptions = append(out.Subscriptions, l.Subscription)
	}
	return out
}

func quote(s string) string { return "'" + s + "'" }
