package v1alpha1

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

func TestOwnerKey(t *testing.T) {
	hashed := OwnerKey("Alice@Example.org")
	tests := map[string]string{
		"":                             "",
		"alice":                        "alice",
		"u-alice":                      "u-alice",
		strings.Repeat("a", 40):        strings.Repeat("a", 40),
		"Alice@Example.org":            hashed,
		"Alice":                        OwnerKey("Alice"),
		strings.Repeat("a", 41):        OwnerKey(strings.Repeat("a", 41)),
		"-alice":                       OwnerKey("-alice"),
		"alice_1":                      OwnerKey("alice_1"),
		"service:mission-control":      OwnerKey("service:mission-control"),
		"h-" + strings.Repeat("0", 40): OwnerKey("h-" + strings.Repeat("0", 40)),
	}
	seen := map[string]string{}
	for id, want := range tests {
		got := OwnerKey(id)
		if got != want {
			t.Errorf("OwnerKey(%q) = %q, want %q", id, got, want)
		}
		if id == "" {
			continue
		}
		// Every key is a label value and, after sortie-host-runtime-, a
		// DNS label: an object name that is also a label value.
		if errs := validation.IsDNS1123Label("sortie-host-runtime-" + got); len(errs) > 0 {
			t.Errorf("OwnerKey(%q) = %q: %v", id, got, errs)
		}
		if prev, dup := seen[got]; dup {
			t.Errorf("%q and %q have the same key %q", prev, id, got)
		}
		seen[got] = id
		verbatim := got == id
		if hashedForm := strings.HasPrefix(got, "h-") && len(got) == 42; verbatim == hashedForm {
			t.Errorf("OwnerKey(%q) = %q is neither the id nor h-<40 hex>", id, got)
		}
	}
	// A user whose id looks like another's hashed key keeps it apart.
	if OwnerKey(hashed) == hashed {
		t.Errorf("the id %q is used verbatim and collides with a hashed key", hashed)
	}
}

func TestDefaults(t *testing.T) {
	mk := func(name, owner, label string, typ WorkspaceType) *Workspace {
		ws := &Workspace{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: WorkspaceSpec{Owner: owner, Type: typ}}
		if label != "" {
			ws.Labels = map[string]string{LabelDefaultFor: label}
		}
		return ws
	}
	if !IsUserDefault(mk("host-alice", "alice", "alice", TypeHost)) {
		t.Error("alice's default is not recognised")
	}
	for name, ws := range map[string]*Workspace{
		"another's label": mk("host-carol", "mallory", "carol", TypeHost),
		"no label":        mk("host-alice", "alice", "", TypeHost),
		"unowned":         mk("host-x", "", "", TypeHost),
		"a container":     mk("host-alice", "alice", "alice", TypeContainer),
	} {
		if IsUserDefault(ws) {
			t.Errorf("%s counts as a user's default", name)
		}
	}
	if !IsSharedDefault(mk(DefaultHostName, "", "", TypeHost)) || IsSharedDefault(mk(DefaultHostName, "", "", TypeContainer)) {
		t.Error("IsSharedDefault")
	}
}
