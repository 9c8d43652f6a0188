package v1alpha1

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
)

// Labels that say whose a workspace is. They are for selection only:
// authorisation always reads spec.owner, which cannot change.
const (
	// LabelOwner is OwnerKey(spec.owner) on an owned workspace and on the
	// owner's host runtime.
	LabelOwner = "sortie.dev/owner"
	// LabelDefaultFor marks a user's default host workspace (multi-user
	// mode) with OwnerKey of that user; it is found by this label and its
	// spec.owner together, never by its name.
	LabelDefaultFor = "sortie.dev/default-for"
)

// ReservedPrefix begins the names of the operator's own objects (the host
// runtimes); Workspace names may not begin with it (a CEL rule), so no
// workspace's children can collide with a runtime's.
const ReservedPrefix = "sortie-"

// EnvSecretSuffix ends the name of a workspace's env Secret: <name>-env.
const EnvSecretSuffix = "-env"

// EnvSecretName is the only Secret a workspace's spec.envSecretRef may name.
func EnvSecretName(workspace string) string { return workspace + EnvSecretSuffix }

// ownerKeyVerbatim: owner ids used as they are, lowercase DNS labels of at
// most 40 characters, so that a key is both a label value and a part of an
// object name (sortie-host-runtime-<key> stays within 63 characters), and
// no verbatim id can equal a hashed key (which has 42).
var ownerKeyVerbatim = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$`)

// OwnerKey is the form of an owner id used in labels and object names:
// the id itself when it is a lowercase DNS label of at most 40 characters,
// else h-<the first 40 hex digits of its SHA-256>. Distinct ids have
// distinct keys; "" (no owner) is "".
func OwnerKey(owner string) string {
	if owner == "" || ownerKeyVerbatim.MatchString(owner) {
		return owner
	}
	sum := sha256.Sum256([]byte(owner))
	return "h-" + hex.EncodeToString(sum[:])[:40]
}

// IsUserDefault reports whether ws is its owner's default host workspace
// (multi-user mode): a host workspace whose default-for label is its own
// owner's key.
func IsUserDefault(ws *Workspace) bool {
	return ws.Spec.Type != TypeContainer && ws.Spec.Owner != "" && ws.Labels[LabelDefaultFor] == OwnerKey(ws.Spec.Owner)
}

// IsSharedDefault reports whether ws is the one default host workspace of
// single-user mode, named host.
func IsSharedDefault(ws *Workspace) bool {
	return ws.Name == DefaultHostName && ws.Spec.Type != TypeContainer
}
