package rest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/authn"
)

// startMultiUser serves the API in multi-user mode from the package's
// apiserver, in a namespace of the test's own; more adds to it.
func startMultiUser(t *testing.T, more ...func(ctrl.Manager, *Handler)) *restEnv {
	t.Helper()
	k := kube.Get(t)
	return startREST(t, k.Config, k.Namespace(t), func(m ctrl.Manager, h *Handler) {
		h.MultiUser = true
		for _, f := range more {
			f(m, h)
		}
	})
}

func mustCreate(t *testing.T, e *restEnv, body map[string]any) Workspace {
	t.Helper()
	r := e.do("POST", "/api/workspaces", body)
	if r.Status != 200 {
		t.Fatalf("create %v: %d %s", body["name"], r.Status, r.Body)
	}
	var ws Workspace
	r.Decode(t, &ws)
	return ws
}

// uidOf is the metadata.uid behind what e's caller calls id.
func uidOf(t *testing.T, e *restEnv, id string) string {
	t.Helper()
	if id != DefaultID {
		return id
	}
	ws := defaultOf(t, e)
	return string(ws.UID)
}

// defaultOf is the Workspace the nil UUID is for e's caller.
func defaultOf(t *testing.T, e *restEnv) *v1alpha1.Workspace {
	t.Helper()
	var got Workspace
	if r := e.do("GET", "/api/workspaces/"+DefaultID, nil); r.Status != 200 {
		t.Fatalf("GET the default: %d %s", r.Status, r.Body)
	} else {
		r.Decode(t, &got)
	}
	var wl v1alpha1.WorkspaceList
	if err := e.client.List(context.Background(), &wl, client.InNamespace(e.ns)); err != nil {
		t.Fatal(err)
	}
	for i := range wl.Items {
		ws := &wl.Items[i]
		if v1alpha1.IsUserDefault(ws) && ws.Spec.Owner == ptrString(got.Owner) {
			return ws
		}
	}
	t.Fatalf("no default workspace object for %v", ptrString(got.Owner))
	return nil
}

// routeBodies is a valid body for each per-workspace route that reads one,
// so that the answer depends on the workspace alone. A route missing here
// is called with {} and, if that makes it answer 400 before looking the
// workspace up, the test says so.
var routeBodies = map[string]any{
	"PUT /api/workspaces/:id":                                map[string]any{"name": "renamed"},
	"POST /api/workspaces/:id/build":                         map[string]any{},
	"POST /api/workspaces/:id/exec":                          map[string]any{"command": "true"},
	"POST /api/workspaces/:id/processes":                     map[string]any{"command": "true"},
	"POST /api/workspaces/:id/processes/:pid/signal":         map[string]any{"signal": "TERM"},
	"POST /api/workspaces/:id/sync":                          nil,
	"POST /api/workspaces/:id/rerun-init":                    nil,
	"GET /api/workspaces/:id/processes/:pid/output?offset=0": nil,
}

type route struct{ method, path string }

// workspaceRoutes are every route the handler registered that names a
// workspace: a route added later is covered without editing the test.
func workspaceRoutes(t *testing.T, e *restEnv) []route {
	t.Helper()
	var out []route
	for _, r := range e.srv.Engine.Routes() {
		if strings.HasPrefix(r.Path, "/api/workspaces/:id") {
			out = append(out, route{r.Method, r.Path})
		}
	}
	if len(out) < 15 {
		t.Fatalf("only %d per-workspace routes registered: %v", len(out), out)
	}
	return out
}

func (r route) call(e *restEnv, id string) resp {
	e.t.Helper()
	key := r.method + " " + r.path
	path := r.path
	if r.path == "/api/workspaces/:id/processes/:pid/output" {
		key += "?offset=0"
		path += "?offset=0"
	}
	var body any = map[string]any{}
	if b, ok := routeBodies[key]; ok {
		body = b
	} else if r.method == "GET" || r.method == "DELETE" {
		body = nil
	}
	path = strings.NewReplacer(":id", id, ":pid", "p1").Replace(path)
	return e.do(r.method, path, body)
}

// refusedLikeUnknown checks that asking for id answers exactly what
// asking for an id that does not exist answers (no existence oracle).
func refusedLikeUnknown(t *testing.T, e *restEnv, who string, r route, id string) {
	t.Helper()
	unknown := string(uuid.NewUUID())
	got, want := r.call(e, id), r.call(e, unknown)
	if want.Status != http.StatusNotFound {
		t.Fatalf("%s %s of an unknown id: %d %s, want 404 (add a valid body to routeBodies)", r.method, r.path, want.Status, want.Body)
	}
	if got.Status != want.Status || !bytes.Equal(bytes.ReplaceAll(got.Body, []byte(id), []byte(unknown)), want.Body) ||
		got.Header.Get("Content-Type") != want.Header.Get("Content-Type") {
		t.Errorf("%s: %s %s of another's workspace: %d %s; an unknown id: %d %s", who, r.method, r.path, got.Status, got.Body, want.Status, want.Body)
	}
}

// TestTenancyEveryRoute attacks every per-workspace route: another user,
// a service's own token, and a service holding another user's delegated
// token are answered as for an id that does not exist; the owner (also
// through a delegated token) and an admin get through. Workspaces made
// with kubectl without an owner are the admins'.
func TestTenancyEveryRoute(t *testing.T) {
	e := startMultiUser(t)
	ctx := context.Background()
	asAlice, asBob, asAdmin := e.as(alice), e.as(bob), e.as(admin)
	box := mustCreate(t, asAlice, map[string]any{"name": "a box", "workspace_type": "container"})
	dir := mustCreate(t, asAlice, map[string]any{"name": "a dir"})
	aliceDefault := uidOf(t, asAlice, DefaultID)
	kubectl := &v1alpha1.Workspace{ObjectMeta: metav1.ObjectMeta{Name: "from-kubectl", Namespace: e.ns},
		Spec: v1alpha1.WorkspaceSpec{DisplayName: "unowned", Type: v1alpha1.TypeContainer}}
	if err := e.client.Create(ctx, kubectl); err != nil {
		t.Fatal(err)
	}
	eventuallyListed(t, asAdmin, string(kubectl.UID))

	routes := workspaceRoutes(t, e)
	attackers := map[string]*restEnv{"bob": asBob, "service token": e.as(service), "bob's delegated token": e.as(forBob)}
	alices := map[string]string{"container": box.ID, "host": dir.ID, "default": aliceDefault}
	for _, r := range routes {
		for who, as := range attackers {
			for what, id := range alices {
				refusedLikeUnknown(t, as, who+" on alice's "+what, r, id)
			}
			refusedLikeUnknown(t, as, who+" on an unowned workspace", r, string(kubectl.UID))
		}
		refusedLikeUnknown(t, asAlice, "alice on an unowned workspace", r, string(kubectl.UID))
		refusedLikeUnknown(t, e.as(forAlice), "alice's delegated token on an unowned workspace", r, string(kubectl.UID))
	}
	// The attacks changed nothing.
	var got Workspace
	asAlice.do("GET", "/api/workspaces/"+box.ID, nil).Decode(t, &got)
	if got.Name != "a box" {
		t.Fatalf("alice's workspace after the attacks: %+v", got)
	}

	// The owner, the owner's delegated token and an admin reach them.
	for _, r := range routes {
		if r.method == "DELETE" && r.path == "/api/workspaces/:id" {
			continue // below
		}
		for who, as := range map[string]*restEnv{"alice": asAlice, "alice's delegated token": e.as(forAlice), "admin": asAdmin} {
			for what, id := range alices {
				if id == aliceDefault && who == "alice" {
					id = DefaultID
				}
				if res := r.call(as, id); res.Status == http.StatusNotFound && res.Code(t) == "not_found" && strings.Contains(string(res.Body), "workspace ") {
					t.Errorf("%s: %s %s of alice's %s: %d %s", who, r.method, r.path, what, res.Status, res.Body)
				}
			}
		}
		if res := r.call(asAdmin, string(kubectl.UID)); res.Status == http.StatusNotFound && strings.Contains(string(res.Body), "workspace ") {
			t.Errorf("admin: %s %s of an unowned workspace: %d %s", r.method, r.path, res.Status, res.Body)
		}
	}

	// Deleting: bob cannot, alice can; nobody deletes a default.
	if r := asBob.do("DELETE", "/api/workspaces/"+dir.ID, nil); r.Status != 404 {
		t.Errorf("bob deletes alice's workspace: %d", r.Status)
	}
	if r := asAlice.do("DELETE", "/api/workspaces/"+dir.ID, nil); r.Status != 200 {
		t.Errorf("alice deletes her workspace: %d %s", r.Status, r.Body)
	}
	for who, as := range map[string]*restEnv{"alice": asAlice, "admin": asAdmin} {
		if r := as.do("DELETE", "/api/workspaces/"+aliceDefault, nil); r.Status != 400 {
			t.Errorf("%s deletes alice's default workspace: %d %s", who, r.Status, r.Body)
		}
	}
	if r := asAdmin.do("DELETE", "/api/workspaces/"+box.ID, nil); r.Status != 200 {
		t.Errorf("an admin deletes alice's workspace: %d %s", r.Status, r.Body)
	}
}

// listSpy records the Workspace lists the handler makes.
type listSpy struct {
	client.Client
	mu    sync.Mutex
	lists []*client.ListOptions
}

func (s *listSpy) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*v1alpha1.WorkspaceList); ok {
		s.mu.Lock()
		s.lists = append(s.lists, (&client.ListOptions{}).ApplyOptions(opts))
		s.mu.Unlock()
	}
	return s.Client.List(ctx, list, opts...)
}

// reset forgets what was recorded and returns it.
func (s *listSpy) reset() []*client.ListOptions {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.lists
	s.lists = nil
	return out
}

// TestTenancyList: a user lists their own workspaces (with their default,
// made on first use) through the owner index, never a list of all; an
// admin lists everyone's, each with its owner, and ?owner=me narrows; a
// service without a user lists none; stats count the caller's own.
func TestTenancyList(t *testing.T) {
	spy := &listSpy{}
	e := startMultiUser(t, func(_ ctrl.Manager, h *Handler) {
		spy.Client = h.Client
		h.Client = spy
	})
	ctx := context.Background()
	asAlice, asBob, asAdmin := e.as(alice), e.as(bob), e.as(admin)
	mustCreate(t, asAlice, map[string]any{"name": "alpha", "workspace_type": "container"})
	mustCreate(t, asAlice, map[string]any{"name": "beta"})
	mustCreate(t, asBob, map[string]any{"name": "gamma", "workspace_type": "container"})
	kubectl := &v1alpha1.Workspace{ObjectMeta: metav1.ObjectMeta{Name: "applied", Namespace: e.ns},
		Spec: v1alpha1.WorkspaceSpec{DisplayName: "applied", Path: "/workspaces/applied"}}
	if err := e.client.Create(ctx, kubectl); err != nil {
		t.Fatal(err)
	}
	eventuallyListed(t, asAdmin, string(kubectl.UID))

	list := func(as *restEnv, query string) []Workspace {
		t.Helper()
		var out []Workspace
		if r := as.do("GET", "/api/workspaces"+query, nil); r.Status != 200 {
			t.Fatalf("list%s: %d %s", query, r.Status, r.Body)
		} else {
			r.Decode(t, &out)
		}
		return out
	}
	summary := func(l []Workspace) []string {
		var out []string
		for _, w := range l {
			id := "uid"
			if w.ID == DefaultID {
				id = "nil"
			}
			owner := ""
			if w.Owner != nil {
				owner = *w.Owner
			}
			out = append(out, fmt.Sprintf("%s:%s:%s", w.Name, owner, id))
		}
		return out
	}
	spy.reset()
	if got, want := summary(list(asAlice, "")), []string{"host:alice:nil", "alpha:alice:uid", "beta:alice:uid"}; !slices.Equal(got, want) {
		t.Errorf("alice lists %v, want %v", got, want)
	}
	for _, lo := range spy.reset() {
		if lo.FieldSelector == nil || lo.FieldSelector.Empty() {
			t.Errorf("a user's list read every workspace (%+v); it must go through an index", lo)
		}
	}
	if got, want := summary(list(asBob, "")), []string{"host:bob:nil", "gamma:bob:uid"}; !slices.Equal(got, want) {
		t.Errorf("bob lists %v, want %v", got, want)
	}
	if got := summary(list(asBob, "?owner=alice")); len(got) != 0 {
		t.Errorf("bob lists alice's with ?owner=alice: %v", got)
	}
	if got, want := summary(list(asAlice, "?owner=me")), []string{"host:alice:nil", "alpha:alice:uid", "beta:alice:uid"}; !slices.Equal(got, want) {
		t.Errorf("alice ?owner=me: %v", got)
	}
	all := summary(list(asAdmin, ""))
	if want := []string{"host:root:nil", "alpha:alice:uid", "applied::uid", "beta:alice:uid", "gamma:bob:uid", "host:alice:uid", "host:bob:uid"}; !slices.Equal(all, want) {
		t.Errorf("the admin lists %v, want %v", all, want)
	}
	if got, want := summary(list(asAdmin, "?owner=me")), []string{"host:root:nil"}; !slices.Equal(got, want) {
		t.Errorf("the admin ?owner=me: %v, want %v", got, want)
	}
	if got, want := summary(list(asAdmin, "?owner=bob")), []string{"gamma:bob:uid", "host:bob:uid"}; !slices.Equal(got, want) {
		t.Errorf("the admin ?owner=bob: %v, want %v", got, want)
	}
	if got := list(e.as(service), ""); len(got) != 0 {
		t.Errorf("a service token lists %v", summary(got))
	}
	if got := summary(list(e.as(forBob), "")); !slices.Equal(got, []string{"host:bob:nil", "gamma:bob:uid"}) {
		t.Errorf("bob's delegated token lists %v", got)
	}

	stats := func(as *restEnv) int {
		var st StatsResponse
		as.do("GET", "/api/stats", nil).Decode(t, &st)
		return st.Workspaces["total"]
	}
	for who, want := range map[string]int{"alice": 3, "bob": 2, "root": 7} {
		as := map[string]*restEnv{"alice": asAlice, "bob": asBob, "root": asAdmin}[who]
		if got := stats(as); got != want {
			t.Errorf("%s's stats count %d workspaces, want %d", who, got, want)
		}
	}
	if got := stats(e.as(service)); got != 0 {
		t.Errorf("a service token's stats count %d workspaces", got)
	}
}

// TestOwnerComesFromTheToken: a created workspace is the caller's (spec,
// label, answer); a body naming another owner is refused, on create and
// update; a service's own token cannot create one.
func TestOwnerComesFromTheToken(t *testing.T) {
	e := startMultiUser(t)
	ctx := context.Background()
	asAlice := e.as(alice)
	ws := mustCreate(t, asAlice, map[string]any{"name": "mine", "owner": "alice"})
	if ptrString(ws.Owner) != "alice" {
		t.Errorf("owner in the answer = %v", ws.Owner)
	}
	var wl v1alpha1.WorkspaceList
	if err := e.client.List(ctx, &wl, client.InNamespace(e.ns), client.MatchingLabels{v1alpha1.LabelOwner: "alice"}); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, w := range wl.Items {
		found = found || (string(w.UID) == ws.ID && w.Spec.Owner == "alice")
	}
	if !found {
		t.Errorf("no Workspace with spec.owner alice and the owner label for %s", ws.ID)
	}
	for name, tc := range map[string]struct {
		as           *restEnv
		method, path string
		body         map[string]any
		want         int
	}{
		"create for bob":        {asAlice, "POST", "/api/workspaces", map[string]any{"name": "x", "owner": "bob"}, 400},
		"create for nobody":     {asAlice, "POST", "/api/workspaces", map[string]any{"name": "x", "owner": ""}, 400},
		"admin creates for bob": {e.as(admin), "POST", "/api/workspaces", map[string]any{"name": "x", "owner": "bob"}, 400},
		"give it to bob":        {asAlice, "PUT", "/api/workspaces/" + ws.ID, map[string]any{"owner": "bob"}, 400},
		"admin gives it to bob": {e.as(admin), "PUT", "/api/workspaces/" + ws.ID, map[string]any{"owner": "bob"}, 400},
		"service creates":       {e.as(service), "POST", "/api/workspaces", map[string]any{"name": "x"}, 403},
	} {
		if r := tc.as.do(tc.method, tc.path, tc.body); r.Status != tc.want {
			t.Errorf("%s: %d %s, want %d", name, r.Status, r.Body, tc.want)
		}
	}
	// Sending back the owner it has is fine.
	if r := asAlice.do("PUT", "/api/workspaces/"+ws.ID, map[string]any{"owner": "alice", "name": "still mine"}); r.Status != 200 {
		t.Errorf("PUT with the same owner: %d %s", r.Status, r.Body)
	}
	// A delegated token creates for its user.
	made := mustCreate(t, e.as(forAlice), map[string]any{"name": "by mission-control"})
	if ptrString(made.Owner) != "alice" {
		t.Errorf("created through alice's delegated token: owner %v", made.Owner)
	}
	// A display name like the reserved prefix still makes a valid name.
	mustCreate(t, asAlice, map[string]any{"name": "sortie host runtime"})
}

// TestDefaultPerUser: in multi-user mode the nil UUID is each caller's
// own default host workspace, made once on first use even when two
// replicas race to make it, found by its label and owner and never by a
// name someone with kubectl took first.
func TestDefaultPerUser(t *testing.T) {
	k := kube.Get(t)
	ns := k.Namespace(t)
	multi := func(_ ctrl.Manager, h *Handler) { h.MultiUser = true }
	one, two := startREST(t, k.Config, ns, multi), startREST(t, k.Config, ns, multi)
	ctx := context.Background()

	// A Workspace made with kubectl under the name carol's default would
	// get, claiming to be hers by label but owned by mallory.
	squat := &v1alpha1.Workspace{ObjectMeta: metav1.ObjectMeta{Name: "host-carol", Namespace: ns,
		Labels: map[string]string{v1alpha1.LabelDefaultFor: "carol"}},
		Spec: v1alpha1.WorkspaceSpec{DisplayName: "host", Path: v1alpha1.HostRoot, Owner: "mallory"}}
	if err := k.Client.Create(ctx, squat); err != nil {
		t.Fatal(err)
	}

	users := []authn.Identity{alice, bob, {UserID: "carol", Username: "carol", Role: authn.RoleUser}}
	var wg sync.WaitGroup
	answers := make(chan string, 64)
	for _, u := range users {
		for i := range 8 {
			e := one
			if i%2 == 1 {
				e = two
			}
			as := e.as(u)
			wg.Go(func() {
				r := as.do("GET", "/api/workspaces/"+DefaultID, nil)
				answers <- fmt.Sprintf("%s %d", u.UserID, r.Status)
			})
		}
	}
	wg.Wait()
	close(answers)
	for a := range answers {
		if !strings.HasSuffix(a, " 200") {
			t.Errorf("first use of the default: %s", a)
		}
	}
	var wl v1alpha1.WorkspaceList
	if err := k.Client.List(ctx, &wl, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	defaults := map[string][]string{}
	for _, ws := range wl.Items {
		if v1alpha1.IsUserDefault(&ws) {
			defaults[ws.Spec.Owner] = append(defaults[ws.Spec.Owner], ws.Name)
		}
	}
	for _, u := range users {
		if len(defaults[u.UserID]) != 1 {
			t.Errorf("%s has defaults %v, want exactly one", u.UserID, defaults[u.UserID])
		}
	}
	if got := defaults["carol"]; len(got) == 1 && got[0] == "host-carol" {
		t.Error("carol was given the squatted workspace")
	}
	if _, ok := defaults["mallory"]; ok {
		t.Error("mallory's squat counts as a default")
	}
	// Each caller's nil UUID is their own; the others' are theirs alone.
	a, b := defaultOf(t, one.as(alice)), defaultOf(t, two.as(bob))
	if a.UID == b.UID || a.Spec.Owner != "alice" || b.Spec.Owner != "bob" || a.Spec.Path != v1alpha1.HostRoot {
		t.Errorf("defaults: alice %s (%s), bob %s (%s)", a.UID, a.Spec.Owner, b.UID, b.Spec.Owner)
	}
	if r := one.as(bob).do("GET", "/api/workspaces/"+string(a.UID), nil); r.Status != 404 {
		t.Errorf("bob reads alice's default by its uid: %d", r.Status)
	}
	var got Workspace
	one.as(alice).do("GET", "/api/workspaces/"+string(a.UID), nil).Decode(t, &got)
	if got.ID != DefaultID {
		t.Errorf("alice's default by its uid is listed as %s, want the nil UUID", got.ID)
	}
	// A service's own token has no default.
	if r := one.as(service).do("GET", "/api/workspaces/"+DefaultID, nil); r.Status != 404 {
		t.Errorf("a service token's default: %d %s", r.Status, r.Body)
	}
	// No shared host workspace is made in multi-user mode.
	if err := k.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: DefaultName}, &v1alpha1.Workspace{}); err == nil {
		t.Error("multi-user mode made the shared host workspace")
	}
}

func TestNewNameIsNeverReserved(t *testing.T) {
	for _, display := range []string{"sortie", "Sortie host runtime", "sortie-x", "host", "host alice", "HOST-bob", strings.Repeat("x", 200), "", rand.Text()} {
		n := newName(display)
		if strings.HasPrefix(n, v1alpha1.ReservedPrefix) || strings.HasPrefix(n, "host-") || len(n) > 63 {
			t.Errorf("newName(%q) = %q", display, n)
		}
	}
}

// TestTemplateSecretsStayOut: a template's sealed env vars go into the
// workspace's own env Secret, never its spec or an answer; a Secret made
// in advance under the name a new workspace's env Secret would have is
// neither used nor touched: the workspace gets another name.
func TestTemplateSecretsStayOut(t *testing.T) {
	lib := fakeLibrary(t)
	names := []string{"fixed-aaaaa", "fixed-bbbbb"}
	var mu sync.Mutex
	nameFor = func(string) string {
		mu.Lock()
		defer mu.Unlock()
		n := names[0]
		if len(names) > 1 {
			names = names[1:]
		}
		return n
	}
	t.Cleanup(func() { nameFor = newName })
	e := startMultiUser(t, func(_ ctrl.Manager, h *Handler) { h.Library = lib })
	ctx := context.Background()
	planted := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "fixed-aaaaa-env", Namespace: e.ns},
		StringData: map[string]string{"LD_PRELOAD": "/workspace/evil.so"}}
	if err := e.client.Create(ctx, planted); err != nil {
		t.Fatal(err)
	}
	r := e.as(alice).do("POST", "/api/workspaces", map[string]any{"name": "fixed", "template": "secrets"})
	if r.Status != 200 {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	if bytes.Contains(r.Body, []byte("tok-9f8e7d")) {
		t.Errorf("the answer holds a secret value: %s", r.Body)
	}
	var ws Workspace
	r.Decode(t, &ws)
	if strings.Join(ws.SecretEnvVars, ",") != "API_TOKEN,OTHER_SECRET" || ws.EnvVars["PLAIN"] != "visible" || len(ws.EnvVars) != 1 {
		t.Errorf("env %v, secret names %v", ws.EnvVars, ws.SecretEnvVars)
	}
	obj := &v1alpha1.Workspace{}
	if err := e.client.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "fixed-bbbbb"}, obj); err != nil || string(obj.UID) != ws.ID {
		t.Fatalf("the workspace is not fixed-bbbbb: %v (%s)", err, obj.UID)
	}
	if obj.Spec.EnvSecretRef != "fixed-bbbbb-env" || len(obj.Spec.EnvVars) != 1 {
		t.Errorf("spec: envSecretRef %q, envVars %v", obj.Spec.EnvSecretRef, obj.Spec.EnvVars)
	}
	sec := &corev1.Secret{}
	if err := e.client.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "fixed-bbbbb-env"}, sec); err != nil {
		t.Fatal(err)
	}
	if c := metav1.GetControllerOf(sec); c == nil || c.UID != obj.UID || string(sec.Data["API_TOKEN"]) != "tok-9f8e7d" {
		t.Errorf("env secret: controller %v, data keys %d", c, len(sec.Data))
	}
	if err := e.client.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "fixed-aaaaa"}, &v1alpha1.Workspace{}); err == nil {
		// It was made and deleted at once; it may still be going.
		got := &v1alpha1.Workspace{}
		_ = e.client.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "fixed-aaaaa"}, got)
		if got.DeletionTimestamp.IsZero() {
			t.Error("the workspace whose env Secret name was taken was kept")
		}
	}
	if err := e.client.Get(ctx, client.ObjectKeyFromObject(planted), planted); err != nil || metav1.GetControllerOf(planted) != nil {
		t.Errorf("the planted Secret: %v, controller %v", err, metav1.GetControllerOf(planted))
	}
	// Every view of it names the secret variables and holds no value.
	for _, p := range []string{"/api/workspaces", "/api/workspaces/" + ws.ID, "/api/workspaces/" + ws.ID + "/debug"} {
		if b := e.as(alice).do("GET", p, nil).Body; bytes.Contains(b, []byte("tok-9f8e7d")) || bytes.Contains(b, []byte("kept-from-template")) {
			t.Errorf("GET %s holds a secret value: %s", p, b)
		}
	}
}
