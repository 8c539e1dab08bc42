// Package events is clr's public hook contract: the kinds of events the
// subscriber tools fire and how an event reaches a hook command, as
// environment variables (clr's CLR_EVENT_* names and vmcatcher's
// VMCATCHER_EVENT_* names, so existing vmcatcher hooks keep working) and as a
// JSON document on standard input.
//
// The package depends on the standard library only and changes only in
// backward-compatible ways: fields are added, never renamed or removed.
package events

import (
	"encoding/json"
	"sort"
	"strconv"
)

// Kind names an event. The values are vmcatcher's event type strings.
type Kind string

// The event kinds (DESIGN section 7).
const (
	ProcessPrefix        Kind = "ProcessPrefix"
	ProcessPostfix       Kind = "ProcessPostfix"
	AvailablePrefix      Kind = "AvailablePrefix"
	AvailablePostfix     Kind = "AvailablePostfix"
	ExpirePrefix         Kind = "ExpirePrefix"
	ExpirePostfix        Kind = "ExpirePostfix"
	SubscriptionImageNew Kind = "SubscriptionImageNew"
)

// SchemaVersion is the version of the JSON payload; it grows when fields are
// added.
const SchemaVersion = 1

// Image describes the image an event is about. Field names follow the image
// list keys.
type Image struct {
	Identifier  string `json:"dc:identifier,omitempty"`
	Title       string `json:"dc:title,omitempty"`
	Description string `json:"dc:description,omitempty"`
	URI         string `json:"hv:uri,omitempty"`
	Size        int64  `json:"hv:size,omitempty"`
	Version     string `json:"hv:version,omitempty"`
	Hypervisor  string `json:"hv:hypervisor,omitempty"`
	Format      string `json:"hv:format,omitempty"`
	Arch        string `json:"sl:arch,omitempty"`
	OS          string `json:"sl:os,omitempty"`
	OSVersion   string `json:"sl:osversion,omitempty"`
	Comments    string `json:"sl:comments,omitempty"`
	SHA512      string `json:"sl:checksum:sha512,omitempty"`
	MPURI       string `json:"ad:mpuri,omitempty"`
}

// Event is one hook invocation.
type Event struct {
	Schema         int    `json:"schema"`
	Type           Kind   `json:"type"`
	Session        string `json:"session,omitempty"`         // one id per run
	ListIdentifier string `json:"list_identifier,omitempty"` // the image list's dc:identifier
	VO             string `json:"vo,omitempty"`              // the list's ad:vo
	Filename       string `json:"filename,omitempty"`        // the published file or folder
	Image          *Image `json:"image,omitempty"`
}

// JSON encodes the event as the hook's standard input.
func (e Event) JSON() ([]byte, error) {
	e.Schema = SchemaVersion
	return json.Marshal(e)
}

// Environ returns the event as sorted NAME=value pairs, each variable under
// both its CLR_EVENT_ and its VMCATCHER_EVENT_ name. Empty values are left
// out.
func (e Event) Environ() []string {
	vars := map[string]string{
		"TYPE":             string(e.Type),
		"UUID_SESSION":     e.Session,
		"IL_DC_IDENTIFIER": e.ListIdentifier,
		"VO":               e.VO,
		"FILENAME":         e.Filename,
	}
	if img := e.Image; img != nil {
		vars["DC_IDENTIFIER"] = img.Identifier
		vars["DC_TITLE"] = img.Title
		vars["DC_DESCRIPTION"] = img.Description
		vars["HV_URI"] = img.URI
		if img.Size > 0 {
			vars["HV_SIZE"] = strconv.FormatInt(img.Size, 10)
		}
		vars["HV_VERSION"] = img.Version
		vars["HV_HYPERVISOR"] = img.Hypervisor
		vars["HV_FORMAT"] = img.Format
		vars["SL_ARCH"] = img.Arch
		vars["SL_OS"] = img.OS
		vars["SL_OSVERSION"] = img.OSVersion
		vars["SL_COMMENTS"] = img.Comments
		vars["SL_CHECKSUM_SHA512"] = img.SHA512
		vars["AD_MPURI"] = img.MPURI
	}
	var out []string
	for k, v := range vars {
		if v == "" {
			continue
		}
		out = append(out, "CLR_EVENT_"+k+"="+v, "VMCATCHER_EVENT_"+k+"="+v)
	}
	sort.Strings(out)
	return out
}
