package service

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/redistest"
	"sortie.dev/services/mission-control/internal/backend/openai/openaitest"
)

// The tenancy tests are attacks: two users (alice, bob) and an admin
// (root) against a mission-control with authentication on, a stand-in
// auth that issues delegated tokens, and the tenantOperator, which checks
// every token the way the real operator does and runs the fake agent.

// tenancyEnv starts mission-control for the attacks, with configured keys
// of its own (the last fallback) and a credentials key.
func tenancyEnv(t *testing.T, is *issuer, op *tenantOperator, rs *redistest.Server, extra map[string]string) *env {
	vars := is.authEnv(t)
	vars["SORTIE_MC_CREDENTIALS_KEY_FILE"] = keyFile(t)
	vars["SORTIE_MC_ANTHROPIC_API_KEY"] = secrets["cfg-anthropic"]
	vars["SORTIE_MC_OPENAI_API_KEY"] = secrets["cfg-openai"]
	vars["SORTIE_MC_AMP_API_KEY"] = secrets["cfg-amp"]
	for k, v := range extra {
		vars[k] = v
	}
	return start(t, options{redis: rs, workspaces: op.url, env: vars})
}

// secrets are every credential the tests set, by name.
var secrets = map[string]string{
	"cfg-anthropic":    "sk-ant-api03-configured-5d1f0c9e2b7a",
	"cfg-openai":       "sk-configured-openai-8e3b1d0c7f2a",
	"cfg-amp":          "amp-configured-4c2e9a7b1f3d",
	"shared-anthropic": "sk-ant-api03-shared-91c3e7a2d4b8",
	"shared-openai":    "sk-shared-openai-6b2f8d1e0c9a",
	"shared-amp":       "amp-shared-3e8c1f7a2d9b",
	"alice-anthropic":  "sk-ant-api03-alice-7a4d2e9c1b3f",
	"alice-openai":     "sk-alice-openai-2d9e4b7c1a8f",
	"bob-amp":          "amp-bob-8f1c3a9e2d7b",
}

// leaks names every secret whose value (or its last 12 characters)
// appears in text, but for the allowed ones.
func leaks(text string, allowed ...string) []string {
	var out []string
	for name, v := range secrets {
		if contains(allowed, name) {
			continue
		}
		if strings.Contains(text, v) || strings.Contains(text, v[len(v)-12:]) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// redisState is every key and value of Redis, in a stable order.
func redisState(t *testing.T, rs *redistest.Server) string {
	lines := strings.Split(redisDump(t, rs), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	var body struct{ Error, Code string }
	r.Decode(t, &body)
	if r.Status != status || body.Code != code || body.Error == "" {
		t.Errorf("%d %s, want %d %s", r.Status, r.Body, status, code)
	}
}

// TestMissionsActAsTheirOwner: bob cannot create a mission in alice's
// workspace, nor message (or resume) one whose workspace he can no longer
// see: 404 not_found, as an unknown workspace, and nothing stored. An
// admin, who sees alice's workspace, cannot put a mission there (403).
// Every call the operator gets for a mission carries a delegated token of
// the mission's owner (its sub and role, act = mission-control); none is
// made with the plain service token.
func TestMissionsActAsTheirOwner(t *testing.T) {
	is := newIssuer(t)
	op := newTenantOperator(t, is)
	op.add("ws-alice", "alice")
	op.add("ws-bob", "bob")
	op.add("ws-unowned", "")
	rs := redistest.Start(t)
	e := tenancyEnv(t, is, op, rs, nil)
	alice, bob, root := e.as(is.sign(t, "alice", authn.RoleUser)), e.as(is.sign(t, "bob", authn.RoleUser)), e.as(is.sign(t, "root", authn.RoleAdmin))

	before := redisState(t, rs)
	for _, tc := range []struct {
		name   string
		as     *env
		ws     string
		status int
		code   string
	}{
		{"bob in alice's workspace", bob, "ws-alice", 404, "not_found"},
		{"bob in a workspace of no one (the admins')", bob, "ws-unowned", 404, "not_found"},
		{"bob in an unknown workspace", bob, "ws-nope", 404, "not_found"},
		{"the admin in alice's workspace", root, "ws-alice", 403, "forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, tc.as.do("POST", "/api/control/missions", map[string]any{"workspace_id": tc.ws, "title": "intruder"}), tc.status, tc.code)
		})
	}
	if after := redisState(t, rs); after != before {
		t.Errorf("refused creations stored something:\nbefore\n%s\nafter\n%s", before, after)
	}
	refused := len(op.callLog())
	if refused != 4 {
		t.Errorf("%d operator calls for four creations, want one lookup each", refused)
	}

	// alice's missions, in her workspace and in her default one, run
	// through the operator as alice.
	ma := alice.create(t, map[string]any{"workspace_id": "ws-alice", "backend": "claudecode"})
	md := alice.create(t, map[string]any{"backend": "amp"})
	if md.WorkspaceName != "default" {
		t.Errorf("the nil UUID resolved to %q, not alice's default workspace", md.WorkspaceName)
	}
	mr := root.create(t, map[string]any{"workspace_id": "ws-unowned", "backend": "codex"})
	for _, m := range []struct {
		e  *env
		id string
	}{{alice, ma.ID}, {alice, md.ID}, {root, mr.ID}} {
		m.e.send(t, m.id, "Please list the files.")
	}
	for _, m := range []struct {
		e  *env
		id string
	}{{alice, ma.ID}, {alice, md.ID}, {root, mr.ID}} {
		if got := m.e.waitStatus(t, m.id, "completed", "failed"); got.Status != "completed" {
			t.Errorf("mission %s: %s; %v", m.id, got.Status, kinds(m.e.events(t, m.id)))
		}
	}
	op.waitIdle(t)
	op.checkDelegated(t)
	seen := map[string]map[string]bool{} // workspace → users
	for _, c := range op.callLog()[refused:] {
		if c.Workspace == "" {
			continue
		}
		if seen[c.Workspace] == nil {
			seen[c.Workspace] = map[string]bool{}
		}
		seen[c.Workspace][c.User+"/"+string(c.Role)] = true
	}
	for ws, want := range map[string]string{"ws-alice": "alice/user", "home-alice": "alice/user", "ws-unowned": "root/admin"} {
		if len(seen[ws]) != 1 || !seen[ws][want] {
			t.Errorf("the operator saw %v on %s, want only %s", seen[ws], ws, want)
		}
	}
	kindsOf := map[string]bool{}
	for _, c := range op.callLog() {
		if c.Workspace == "ws-alice" {
			kindsOf[c.Method+" "+strings.TrimPrefix(c.Path, "/api/workspaces/ws-alice")] = true
		}
	}
	for _, k := range []string{"GET ", "POST /exec", "POST /processes", "GET /processes/mc-", "DELETE /processes/mc-"} {
		found := false
		for got := range kindsOf {
			found = found || strings.HasPrefix(got, k)
		}
		if !found {
			t.Errorf("no %q call as alice (lookup, mission directory, start, output, delete): %v", k, kindsOf)
		}
	}
	// A workspace alice loses while her message waits: the turn fails
	// when it starts, and never runs anywhere else.
	op.add("ws-alice-2", "alice")
	mw := alice.create(t, map[string]any{"workspace_id": "ws-alice-2", "backend": "claudecode"})
	ctx := context.Background()
	holds := []any{"hold-1", "hold-2", "hold-3"} // her three slots
	rs.Client.SAdd(ctx, "mc:u:{alice}:running", holds...)
	if _, queued := alice.send(t, mw.ID, "Please list the files."); !queued {
		t.Fatal("the message did not wait")
	}
	op.setOwner("ws-alice-2", "carol")
	rs.Client.SRem(ctx, "mc:u:{alice}:running", holds...)
	alice.waitStatus(t, mw.ID, "failed")
	if r := terminalReason(t, alice, mw.ID); r != "workspace_gone" {
		t.Errorf("terminal reason %q, want workspace_gone", r)
	}
	if n := len(op.startLog()); n != 3 {
		t.Errorf("%d processes started, want the first three missions' only", n)
	}

	if is.delegations("alice") == 0 || is.delegations("bob") == 0 || is.delegations("root") == 0 {
		t.Errorf("delegated tokens issued: alice %d, bob %d, root %d", is.delegations("alice"), is.delegations("bob"), is.delegations("root"))
	}

	// bob's mission whose workspace he can no longer see: messages and a
	// resume are 404 and store nothing.
	mb := bob.create(t, map[string]any{"workspace_id": "ws-bob", "backend": "claudecode"})
	if r := bob.do("POST", "/api/control/missions/"+mb.ID+"/status", map[string]any{"status": "failed"}); r.Status != 200 {
		t.Fatalf("status: %d %s", r.Status, r.Body)
	}
	op.setOwner("ws-bob", "carol")
	before = redisState(t, rs)
	wantError(t, bob.do("POST", "/api/control/message", map[string]any{"content": "hello", "mission_id": mb.ID}), 404, "not_found")
	wantError(t, bob.do("POST", "/api/control/message", map[string]any{"content": "hello"}), 404, "not_found") // the current mission
	wantError(t, bob.do("POST", "/api/control/missions/"+mb.ID+"/resume", nil), 404, "not_found")
	if after := redisState(t, rs); after != before {
		t.Errorf("refused messages stored something:\nbefore\n%s\nafter\n%s", before, after)
	}
	// His other missions still work: a message without a current mission
	// makes one in his default workspace.
	bob.do("DELETE", "/api/control/missions/"+mb.ID, nil)
	if r := bob.do("POST", "/api/control/message", map[string]any{"content": "hello"}); r.Status != 200 {
		t.Errorf("bob's message to a new mission: %d %s", r.Status, r.Body)
	}
	op.waitIdle(t)
	op.checkDelegated(t)
}

// providerList is GET /api/providers.
type providerList struct {
	Providers []struct {
		ID, Source, Scope string
		Configured        bool
		AuthType          string `json:"auth_type"`
		Own, Shared       *struct {
			AuthType string `json:"auth_type"`
			Error    string
		}
	}
}

func (p providerList) get(id string) (out struct {
	Source, Scope string
	Own, Shared   bool
}) {
	for _, v := range p.Providers {
		if v.ID == id {
			out.Source, out.Scope, out.Own, out.Shared = v.Source, v.Scope, v.Own != nil, v.Shared != nil
		}
	}
	return out
}

// TestCredentialsPerUser: a user cannot read or change another's
// credentials, nor set shared ones; a run gets its owner's credential for
// its backend, else the shared one, else the configured one; a CLI's
// environment holds that one credential and no other; and no key appears
// in any API answer, any process's argv, any file in the workspace or in
// Redis.
func TestCredentialsPerUser(t *testing.T) {
	is := newIssuer(t)
	op := newTenantOperator(t, is)
	rs := redistest.Start(t)
	ep := openaitest.New(t)
	e := tenancyEnv(t, is, op, rs, map[string]string{"SORTIE_MC_OPENAI_BASE_URL": ep.URL})
	alice, bob, root := e.as(is.sign(t, "alice", authn.RoleUser)), e.as(is.sign(t, "bob", authn.RoleUser)), e.as(is.sign(t, "root", authn.RoleAdmin))
	var answers strings.Builder // every API answer of the test
	do := func(who *env, method, path string, body any) response {
		t.Helper()
		r := who.do(method, path, body)
		fmt.Fprintf(&answers, "%s %s: %s\n", method, path, r.Body)
		return r
	}
	ok := func(r response) {
		t.Helper()
		if r.Status != 200 {
			t.Fatalf("%d %s", r.Status, r.Body)
		}
	}

	// Shared credentials: admins only.
	for _, p := range []string{"anthropic", "openai", "amp"} {
		ok(do(root, "POST", "/api/providers/"+p+"/auth?shared=true", map[string]any{"api_key": secrets["shared-"+p]}))
	}
	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"a user sets a shared key", "POST", "/api/providers/openai/auth?shared=true", map[string]any{"api_key": "sk-mine-now"}, 403, "forbidden"},
		{"a user starts a shared sign-in", "POST", "/api/providers/openai/auth?shared=true", nil, 403, "forbidden"},
		{"a user deletes a shared key", "DELETE", "/api/providers/openai/auth?shared=true", nil, 403, "forbidden"},
		{"shared is not a boolean", "POST", "/api/providers/openai/auth?shared=maybe", map[string]any{"api_key": "k"}, 400, "bad_request"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantError(t, do(bob, tc.method, tc.path, tc.body), tc.status, tc.code) })
	}

	// Own credentials: alice's are hers alone.
	ok(do(alice, "POST", "/api/providers/anthropic/auth", map[string]any{"api_key": secrets["alice-anthropic"]}))
	ok(do(bob, "POST", "/api/providers/amp/auth", map[string]any{"api_key": secrets["bob-amp"]}))
	ok(do(bob, "DELETE", "/api/providers/anthropic/auth", nil)) // his own: he has none
	var pa, pb providerList
	do(alice, "GET", "/api/providers", nil).Decode(t, &pa)
	do(bob, "GET", "/api/providers", nil).Decode(t, &pb)
	if got := pa.get("anthropic"); got.Scope != "user" || !got.Own || !got.Shared {
		t.Errorf("alice's anthropic after bob's delete: %+v", got)
	}
	if got := pb.get("anthropic"); got.Scope != "shared" || got.Own {
		t.Errorf("bob's anthropic: %+v", got)
	}
	if got := pb.get("amp"); got.Scope != "user" || !got.Own {
		t.Errorf("bob's amp: %+v", got)
	}
	if got := pa.get("amp"); got.Scope != "shared" || got.Own {
		t.Errorf("alice's amp: %+v", got)
	}

	// Runs: each CLI's environment has the one credential it needs.
	dumps := t.TempDir() // outside every workspace
	runs := []struct {
		name    string
		who     *env
		mission map[string]any
		want    map[string]string // variables → secret name
		after   func()
	}{
		{name: "alice's claude gets her own key", who: alice, mission: map[string]any{"backend": "claudecode"},
			want: map[string]string{"ANTHROPIC_API_KEY": "alice-anthropic"}},
		{name: "bob's claude falls back to the shared key", who: bob, mission: map[string]any{"backend": "claudecode"},
			want: map[string]string{"ANTHROPIC_API_KEY": "shared-anthropic"}},
		{name: "bob's amp gets his own key", who: bob, mission: map[string]any{"backend": "amp"},
			want: map[string]string{"AMP_API_KEY": "bob-amp"}},
		{name: "opencode with an openai model gets the openai key only", who: alice, mission: map[string]any{"backend": "opencode", "model_override": "openai/gpt-5"},
			want: map[string]string{"OPENAI_API_KEY": "shared-openai"}},
		{name: "opencode without a model gets one key", who: alice, mission: map[string]any{"backend": "opencode"},
			want: map[string]string{"ANTHROPIC_API_KEY": "alice-anthropic"}},
		{name: "opencode with another provider's model gets none", who: alice, mission: map[string]any{"backend": "opencode", "model_override": "openrouter/x"},
			want: map[string]string{}},
		{name: "codex gets the openai key (under both its names)", who: bob, mission: map[string]any{"backend": "codex"},
			want: map[string]string{"CODEX_API_KEY": "shared-openai", "OPENAI_API_KEY": "shared-openai"}},
		{name: "without a shared key, the configured one", who: alice, mission: map[string]any{"backend": "amp"},
			want:  map[string]string{"AMP_API_KEY": "cfg-amp"},
			after: func() { ok(do(root, "DELETE", "/api/providers/amp/auth?shared=true", nil)) }},
	}
	for i, run := range runs {
		t.Run(run.name, func(t *testing.T) {
			if run.after != nil {
				run.after()
			}
			m := run.who.create(t, run.mission)
			dump := filepath.Join(dumps, fmt.Sprintf("env-%d", i))
			run.who.send(t, m.ID, "dump-env "+dump+" then list the files")
			got := run.who.waitStatus(t, m.ID, "completed", "failed")
			if len(run.want) > 0 && got.Status != "completed" {
				t.Errorf("status %s; %v", got.Status, kinds(run.who.events(t, m.ID)))
			}
			raw, err := os.ReadFile(dump)
			if err != nil {
				t.Fatalf("the CLI wrote no environment: %v", err)
			}
			var allowed []string
			for name, secret := range run.want {
				allowed = append(allowed, secret)
				if !strings.Contains("\n"+string(raw), "\n"+name+"="+secrets[secret]+"\n") {
					t.Errorf("%s is not %s in the CLI's environment:\n%s", name, secret, raw)
				}
			}
			if l := leaks(string(raw), allowed...); len(l) > 0 {
				t.Errorf("the CLI's environment holds %v besides %v:\n%s", l, allowed, raw)
			}
		})
	}

	// The built-in backend sends the owner's openai credential from
	// mission-control and never into the workspace.
	for _, tc := range []struct {
		who    *env
		bearer string
	}{{bob, "shared-openai"}, {alice, "alice-openai"}} {
		if tc.who == alice {
			ok(do(alice, "POST", "/api/providers/openai/auth", map[string]any{"api_key": secrets["alice-openai"]}))
		}
		ep.Add(openaitest.Reply{Chunks: []string{openaitest.Content("Hello."), openaitest.Finish("stop")}})
		m := tc.who.create(t, map[string]any{"backend": "openai"})
		tc.who.send(t, m.ID, "hi")
		if got := tc.who.waitStatus(t, m.ID, "completed", "failed"); got.Status != "completed" {
			t.Errorf("built-in turn: %s", got.Status)
		}
		auth := ep.Auth()
		if last := auth[len(auth)-1]; last != "Bearer "+secrets[tc.bearer] {
			t.Errorf("the endpoint got %q, want the %s key", last, tc.bearer)
		}
	}
	op.waitIdle(t)
	op.checkDelegated(t)

	// No key anywhere it must not be: argv, the workspace volumes, Redis,
	// and every answer of the API.
	for _, s := range op.startLog() {
		if l := leaks(strings.Join(s.Argv, " ")); len(l) > 0 {
			t.Errorf("argv %v holds %v", s.Argv, l)
		}
	}
	filepath.WalkDir(op.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if b, err := os.ReadFile(p); err == nil {
			if l := leaks(string(b)); len(l) > 0 {
				t.Errorf("file %s in a workspace holds %v", p, l)
			}
		}
		return nil
	})
	if l := leaks(redisDump(t, rs)); len(l) > 0 {
		t.Errorf("Redis holds %v in plain text", l)
	}
	for _, who := range []*env{alice, bob, root} {
		do(who, "GET", "/api/providers?include_all=true", nil)
		do(who, "GET", "/api/health", nil)
		do(who, "GET", "/api/control/queue", nil)
		var list []mission
		do(who, "GET", "/api/control/missions", nil).Decode(t, &list)
		for _, m := range list {
			do(who, "GET", "/api/control/missions/"+m.ID, nil)
			do(who, "GET", "/api/control/missions/"+m.ID+"/events", nil)
		}
	}
	if l := leaks(answers.String()); len(l) > 0 {
		t.Errorf("API answers hold %v", l)
	}
	if !strings.Contains(answers.String(), `"scope":"shared"`) {
		t.Errorf("answers never name a scope")
	}
}

// TestRemovedAndDemotedUsersAreRefused: mission-control checks that a
// token's user is still one, with the token's role, in the principals auth
// publishes: a removed user and a demoted admin are 401 (they log in
// again); the others go on.
func TestRemovedAndDemotedUsersAreRefused(t *testing.T) {
	is := newIssuer(t)
	rs := redistest.Start(t)
	e := start(t, options{redis: rs, env: is.authEnv(t)})
	publishPrincipals(t, rs, map[string]authn.Role{"alice": authn.RoleUser, "root": authn.RoleUser})
	for _, tc := range []struct {
		name   string
		token  string
		status int
	}{
		{"alice", is.sign(t, "alice", authn.RoleUser), 200},
		{"removed bob", is.sign(t, "bob", authn.RoleUser), 401},
		{"demoted root", is.sign(t, "root", authn.RoleAdmin), 401},
		{"root as the user he is now", is.sign(t, "root", authn.RoleUser), 200},
	} {
		if r := e.as(tc.token).do("GET", "/api/control/missions", nil); r.Status != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, r.Status, r.Body, tc.status)
		}
	}
}
