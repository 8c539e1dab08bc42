package events

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestEnviron(t *testing.T) {
	e := Event{Type: AvailablePostfix, ListIdentifier: "L", Image: &Image{Identifier: "I", Size: 42, SHA512: "ab"}}
	got := e.Environ()
	for _, want := range []string{
		"CLR_EVENT_TYPE=AvailablePostfix", "VMCATCHER_EVENT_TYPE=AvailablePostfix",
		"VMCATCHER_EVENT_IL_DC_IDENTIFIER=L", "VMCATCHER_EVENT_DC_IDENTIFIER=I",
		"VMCATCHER_EVENT_HV_SIZE=42", "CLR_EVENT_SL_CHECKSUM_SHA512=ab",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("missing %s in %v", want, got)
		}
	}
	if slices.ContainsFunc(got, func(s string) bool { return s == "CLR_EVENT_VO=" }) {
		t.Error("empty variables must be left out")
	}
	if !slices.IsSorted(got) {
		t.Error("not sorted")
	}
}

func TestJSON(t *testing.T) {
	b, err := Event{Type: ExpirePrefix}.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["schema"] != float64(SchemaVersion) || m["type"] != "ExpirePrefix" {
		t.Fatalf("got %s", b)
	}
}
