package rest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/kit/authn"
)

// Tenancy (docs/tenancy.md): a workspace belongs to the user in its
// spec.owner, set here from the caller's token and immutable (CEL). A user
// sees and acts on their own workspaces only; an admin on all; a workspace
// without an owner (made with kubectl) belongs to the admins. A service
// token alone (no act claim) reaches no workspace: a service acting for a
// user calls with a delegated token, whose sub and role are the user's.
// Every per-workspace route resolves its id through find, which answers a
// workspace the caller may not reach exactly as one that does not exist.

// Indexes of the cache the handler looks workspaces up by; never a list
// of every workspace on a request.
const (
	uidIndex   = "metadata.uid"
	ownerIndex = "spec.owner"
)

// IndexWorkspaces registers the cache indexes the handler looks
// workspaces up by; call it before the manager starts.
func IndexWorkspaces(ctx context.Context, indexer client.FieldIndexer) error {
	if err := indexer.IndexField(ctx, &v1alpha1.Workspace{}, uidIndex, func(o client.Object) []string {
		return []string{string(o.GetUID())}
	}); err != nil {
		return err
	}
	return indexer.IndexField(ctx, &v1alpha1.Workspace{}, ownerIndex, func(o client.Object) []string {
		if owner := o.(*v1alpha1.Workspace).Spec.Owner; owner != "" {
			return []string{owner}
		}
		return nil
	})
}

// callerOf is the request's identity (set by kit's authenticator); without
// one, an identity that reaches nothing.
func callerOf(c *gin.Context) authn.Identity {
	id, _ := authn.FromContext(c.Request.Context())
	return id
}

// isUser reports whether id is a user (directly, or through a service
// holding a delegated token): only users own and reach workspaces.
func isUser(id authn.Identity) bool {
	return id.UserID != "" && (id.Role == authn.RoleUser || id.Role == authn.RoleAdmin)
}

// allowed reports whether id may see and act on ws.
func allowed(id authn.Identity, ws *v1alpha1.Workspace) bool {
	switch {
	case !isUser(id):
		return false
	case id.IsAdmin():
		return true
	default:
		return ws.Spec.Owner != "" && ws.Spec.Owner == id.UserID
	}
}

// notFound is the one answer for an id that is unknown or not the caller's.
func notFound(c *gin.Context, id string) {
	apierror.Respond(c, apierror.NotFound("workspace %s not found", id))
}

// find resolves a route's workspace id (metadata.uid, or the nil UUID for
// the caller's default host workspace) and checks the caller may reach it.
// An unknown id and another user's are the same 404 after the same one
// cache lookup. (Create waits for the cache to hold what it made, so a
// client reading what it just made is not told 404.)
func (h *Handler) find(c *gin.Context) (*v1alpha1.Workspace, bool) {
	id := c.Param("id")
	who := callerOf(c)
	if id == DefaultID {
		ws, err := h.defaultWorkspace(c.Request.Context(), who)
		switch {
		case err != nil:
			apierror.Respond(c, err)
			return nil, false
		case ws == nil || !allowed(who, ws):
			notFound(c, id)
			return nil, false
		}
		return ws, true
	}
	var wl v1alpha1.WorkspaceList
	if err := h.Client.List(c.Request.Context(), &wl, client.InNamespace(h.Namespace), client.MatchingFields{uidIndex: id}); err != nil {
		apierror.Respond(c, fmt.Errorf("look up workspace: %w", err))
		return nil, false
	}
	for i := range wl.Items {
		if string(wl.Items[i].UID) == id && allowed(who, &wl.Items[i]) {
			return &wl.Items[i], true
		}
	}
	notFound(c, id)
	return nil, false
}

// visible lists the workspaces a caller sees: their own, or all for an
// admin (narrowed to one owner's by owner, "me" being the admin's own).
// A service without a user sees none.
func (h *Handler) visible(ctx context.Context, who authn.Identity, owner string) ([]v1alpha1.Workspace, error) {
	if !isUser(who) {
		return nil, nil
	}
	if owner == "me" {
		owner = who.UserID
	}
	if !who.IsAdmin() {
		if owner != "" && owner != who.UserID {
			return nil, nil
		}
		owner = who.UserID
	}
	opts := []client.ListOption{client.InNamespace(h.Namespace)}
	if owner != "" {
		opts = append(opts, client.MatchingFields{ownerIndex: owner})
	}
	var wl v1alpha1.WorkspaceList
	if err := h.Client.List(ctx, &wl, opts...); err != nil {
		return nil, fmt.Errorf("list workspaces: %w", err)
	}
	return wl.Items, nil
}

// isCallersDefault reports whether ws is what the nil UUID means for who:
// the one host workspace (single-user mode) or who's own default.
func (h *Handler) isCallersDefault(ws *v1alpha1.Workspace, who authn.Identity) bool {
	if !h.MultiUser {
		return ws.Name == DefaultName
	}
	return v1alpha1.IsUserDefault(ws) && ws.Spec.Owner == who.UserID
}

// restID is ws's id as who sees it: the nil UUID for their default host
// workspace, else metadata.uid.
func (h *Handler) restID(ws *v1alpha1.Workspace, who authn.Identity) string {
	if h.isCallersDefault(ws, who) {
		return DefaultID
	}
	return string(ws.UID)
}

// view is ws as who sees it over REST: its id for them, and the names (never
// the values) of its secret environment variables.
func (h *Handler) view(ctx context.Context, ws *v1alpha1.Workspace, who authn.Identity) Workspace {
	out := toREST(ws, h.restID(ws, who))
	if ws.Spec.EnvSecretRef != "" {
		sec := &corev1.Secret{}
		if err := h.Client.Get(ctx, client.ObjectKey{Namespace: ws.Namespace, Name: ws.Spec.EnvSecretRef}, sec); err == nil && envSecretUsable(sec, ws) {
			for k := range sec.Data {
				out.SecretEnvVars = append(out.SecretEnvVars, k)
			}
			sort.Strings(out.SecretEnvVars)
		}
	}
	return out
}

// envSecretUsable: a workspace's env Secret is its own (made by REST) or
// no one's (made with kubectl), never another object's.
func envSecretUsable(sec *corev1.Secret, ws *v1alpha1.Workspace) bool {
	c := metav1.GetControllerOf(sec)
	return c == nil || c.UID == ws.UID
}

// secretEnv reads the values of a host workspace's env Secret, which its
// commands get from here (a host runtime's container has none of them);
// a container's Pod reads its own with envFrom.
func (h *Handler) secretEnv(ctx context.Context, ws *v1alpha1.Workspace) (map[string]string, error) {
	if ws.Spec.EnvSecretRef == "" || ws.Spec.Type == v1alpha1.TypeContainer {
		return nil, nil
	}
	sec := &corev1.Secret{}
	err := h.Client.Get(ctx, client.ObjectKey{Namespace: ws.Namespace, Name: ws.Spec.EnvSecretRef}, sec)
	switch {
	case apierrors.IsNotFound(err):
		return nil, apierror.Newf(http.StatusConflict, CodeNotReady, "the workspace's Secret %s is missing", ws.Spec.EnvSecretRef)
	case err != nil:
		return nil, fmt.Errorf("read the workspace's env secret: %w", err)
	case !envSecretUsable(sec, ws):
		return nil, apierror.Newf(http.StatusConflict, CodeNotReady, "the Secret %s belongs to another object", ws.Spec.EnvSecretRef)
	}
	out := make(map[string]string, len(sec.Data))
	for k, v := range sec.Data {
		out[k] = string(v)
	}
	return out, nil
}

// defaultWorkspace resolves the nil UUID for who: in single-user mode the
// one host workspace; in multi-user mode who's own default host workspace,
// made on first use. nil when there is none for who.
func (h *Handler) defaultWorkspace(ctx context.Context, who authn.Identity) (*v1alpha1.Workspace, error) {
	if !h.MultiUser {
		ws := &v1alpha1.Workspace{}
		err := h.Client.Get(ctx, client.ObjectKey{Namespace: h.Namespace, Name: DefaultName}, ws)
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("get the default workspace: %w", err)
		}
		return ws, nil
	}
	if !isUser(who) {
		return nil, nil
	}
	if ws, err := h.userDefault(ctx, h.Client, true, who.UserID); ws != nil || err != nil {
		return ws, err
	}
	return h.makeUserDefault(ctx, who.UserID)
}

// userDefault finds owner's default host workspace by its label and
// spec.owner (never by a name, which anyone with kubectl could take). Of
// several, the oldest wins.
// The cache (cached) also selects by the owner index; the apiserver by the
// label alone.
func (h *Handler) userDefault(ctx context.Context, r client.Reader, cached bool, owner string) (*v1alpha1.Workspace, error) {
	opts := []client.ListOption{client.InNamespace(h.Namespace), client.MatchingLabels{v1alpha1.LabelDefaultFor: v1alpha1.OwnerKey(owner)}}
	if cached {
		opts = append(opts, client.MatchingFields{ownerIndex: owner})
	}
	var wl v1alpha1.WorkspaceList
	if err := r.List(ctx, &wl, opts...); err != nil {
		return nil, fmt.Errorf("look up the default workspace: %w", err)
	}
	var best *v1alpha1.Workspace
	for i := range wl.Items {
		ws := &wl.Items[i]
		if !v1alpha1.IsUserDefault(ws) || ws.Spec.Owner != owner || !ws.DeletionTimestamp.IsZero() {
			continue
		}
		if best == nil || ws.CreationTimestamp.Before(&best.CreationTimestamp) ||
			(ws.CreationTimestamp.Equal(&best.CreationTimestamp) && ws.Name < best.Name) {
			best = ws
		}
	}
	return best, nil
}

// defaultLocks serialises the first use of each owner's default in this
// replica; across replicas the names below do (a create of an existing
// name fails).
var defaultLocks sync.Map // owner → *sync.Mutex

// defaultNames are the names a default host workspace is made under, in
// order: one fixed name per owner, so that two replicas racing to make it
// make one. Each later one is for an earlier one taken by a Workspace that
// is not this owner's default.
func defaultNames(owner string) []string {
	base := "host-" + v1alpha1.OwnerKey(owner)
	return []string{base, base + "-1", base + "-2", base + "-3", base + "-4"}
}

// makeUserDefault makes owner's default host workspace unless a replica
// just did: it lives at the root of the owner's host runtime and gets
// every skill of the library.
func (h *Handler) makeUserDefault(ctx context.Context, owner string) (*v1alpha1.Workspace, error) {
	mu, _ := defaultLocks.LoadOrStore(owner, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	// Made while this call waited for the lock (the cache), or by another
	// replica a moment ago (the apiserver).
	if ws, err := h.userDefault(ctx, h.Client, true, owner); ws != nil || err != nil {
		return ws, err
	}
	if ws, err := h.userDefault(ctx, h.Reader, false, owner); ws != nil || err != nil {
		if ws != nil {
			h.waitCached(ctx, ws)
		}
		return ws, err
	}
	key := v1alpha1.OwnerKey(owner)
	for _, name := range defaultNames(owner) {
		ws := &v1alpha1.Workspace{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.Namespace,
				Labels: map[string]string{v1alpha1.LabelOwner: key, v1alpha1.LabelDefaultFor: key}},
			Spec: v1alpha1.WorkspaceSpec{DisplayName: DefaultName, Type: v1alpha1.TypeHost, Path: v1alpha1.HostRoot, Owner: owner},
		}
		err := h.Client.Create(ctx, ws)
		if err == nil {
			h.Log.InfoContext(ctx, "created a user's default host workspace", "workspace", name, "owner", owner)
			h.waitCached(ctx, ws)
			return ws, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fromKube(err)
		}
		got := &v1alpha1.Workspace{}
		if err := h.Reader.Get(ctx, client.ObjectKeyFromObject(ws), got); err != nil {
			if apierrors.IsNotFound(err) {
				continue // deleted in between: the next name
			}
			return nil, fmt.Errorf("get %s: %w", name, err)
		}
		if v1alpha1.IsUserDefault(got) && got.Spec.Owner == owner && got.DeletionTimestamp.IsZero() {
			h.waitCached(ctx, got)
			return got, nil // another replica made it
		}
		h.Log.WarnContext(ctx, "a workspace that is not the user's default holds the name of it", "workspace", name, "owner", owner)
	}
	return nil, apierror.New(http.StatusConflict, apierror.CodeConflict,
		"every name of this user's default workspace is taken by other workspaces (made with kubectl); an admin must rename them")
}

// waitCached waits (briefly) until the cache holds ws (and its env
// Secret), so that the answer's id can be used at once: lookups read the
// cache only.
func (h *Handler) waitCached(ctx context.Context, ws *v1alpha1.Workspace) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		var wl v1alpha1.WorkspaceList
		err := h.Client.List(ctx, &wl, client.InNamespace(ws.Namespace), client.MatchingFields{uidIndex: string(ws.UID)})
		if err == nil && len(wl.Items) > 0 && ws.Spec.EnvSecretRef != "" {
			err = h.Client.Get(ctx, client.ObjectKey{Namespace: ws.Namespace, Name: ws.Spec.EnvSecretRef}, &corev1.Secret{})
		}
		if err == nil && len(wl.Items) > 0 {
			return
		}
		select {
		case <-ctx.Done():
			h.Log.WarnContext(ctx, "the cache did not show a new workspace in time", "workspace", ws.Name)
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// nameFor names a new workspace (newName; a test may take it over).
var nameFor = newName

// nameAlphabet is what the apiserver's generateName draws from.
const nameAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// newName is a workspace name for a display name: its slug and five
// random characters, as generateName would make (chosen here, because a
// workspace's env Secret is named after it before it exists).
func newName(display string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = nameAlphabet[int(b[i])%len(nameAlphabet)]
	}
	return slug(display) + string(b)
}
