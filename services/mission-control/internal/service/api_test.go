package service

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"sortie.dev/api"
	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/openapitest"
	"sortie.dev/services/kit/redistest"
	"sortie.dev/services/kit/server"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/mission-control/internal/config"
	"sortie.dev/services/mission-control/internal/control"
)

func TestRoutesMatchSpec(t *testing.T) {
	e := start(t, options{})
	openapitest.Load(t, api.OpenAPI).CheckRoutes(t, e.svc.Server.Engine.Routes(),
		[]string{"/api/control", "/api/providers", "/api/health"}, server.OperationalPaths...)
}

func TestConfigListsEveryProblem(t *testing.T) {
	_, err := config.Load(nil, func(k string) (string, bool) {
		v, ok := map[string]string{"SORTIE_MC_MAX_RUNNING_PER_USER": "0", "SORTIE_MC_DEFAULT_BACKEND": "gpt"}[k]
		return v, ok
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"SORTIE_REDIS_URL", "SORTIE_AUTH_JWKS_URL", "SORTIE_WORKSPACES_URL", "SORTIE_AUTH_URL",
		"SORTIE_MC_MAX_RUNNING_PER_USER", "SORTIE_MC_DEFAULT_BACKEND"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
}

type mission struct {
	ID            string  `json:"id"`
	Status        string  `json:"status"`
	Title         *string `json:"title"`
	WorkspaceID   string  `json:"workspace_id"`
	WorkspaceName string  `json:"workspace_name"`
	Backend       string  `json:"backend"`
	ModelEffort   *string `json:"model_effort"`
	Resumable     bool    `json:"resumable"`
	History       []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"history"`
}

func TestMissionLifecycle(t *testing.T) {
	e := start(t, options{})
	var m mission
	r := e.do("POST", "/api/control/missions", nil)
	if r.Status != 200 {
		t.Fatalf("create without a body: %d %s", r.Status, r.Body)
	}
	r.Decode(t, &m)
	if m.Status != "pending" || m.Backend != "claudecode" || m.WorkspaceID != "00000000-0000-0000-0000-000000000000" || m.Title != nil || m.WorkspaceName == "" {
		t.Errorf("defaults: %s", r.Body)
	}
	var cur mission
	e.do("GET", "/api/control/missions/current", nil).Decode(t, &cur)
	if cur.ID != m.ID {
		t.Errorf("current = %s, want the new mission", cur.ID)
	}

	var second mission
	e.do("POST", "/api/control/missions", map[string]any{"title": "Fix it", "workspace_id": "ws-ok", "backend": "codex", "model_effort": "high", "agent": ""}).Decode(t, &second)
	if second.Title == nil || *second.Title != "Fix it" || second.Backend != "codex" || *second.ModelEffort != "high" {
		t.Errorf("fields: %+v", second)
	}
	var list []mission
	r = e.do("GET", "/api/control/missions", nil)
	r.Decode(t, &list)
	if len(list) != 2 || list[0].ID != second.ID || r.Header.Get("X-Total-Count") != "2" {
		t.Errorf("list (newest first): %s", r.Body)
	}
	e.do("GET", "/api/control/missions?limit=1&offset=1", nil).Decode(t, &list)
	if len(list) != 1 || list[0].ID != m.ID {
		t.Errorf("page 2: %+v", list)
	}

	if r := e.do("POST", "/api/control/missions/"+m.ID+"/load", nil); r.Status != 200 {
		t.Fatalf("load: %d %s", r.Status, r.Body)
	}
	e.do("GET", "/api/control/missions/current", nil).Decode(t, &cur)
	if cur.ID != m.ID {
		t.Errorf("current after load = %s", cur.ID)
	}
	if r := e.do("POST", "/api/control/missions/"+m.ID+"/status", map[string]any{"status": "interrupted"}); r.Status != 200 {
		t.Fatalf("status: %d %s", r.Status, r.Body)
	}
	var got mission
	e.do("GET", "/api/control/missions/"+m.ID, nil).Decode(t, &got)
	if got.Status != "interrupted" || !got.Resumable {
		t.Errorf("after status: %+v", got)
	}
	var evs []map[string]any
	e.do("GET", "/api/control/missions/"+m.ID+"/events", nil).Decode(t, &evs)
	if len(evs) != 1 || evs[0]["event_type"] != "mission_status_changed" || evs[0]["sequence"] != float64(1) {
		t.Errorf("events: %v", evs)
	}
	if r := e.do("GET", "/api/control/missions/"+m.ID+"/tree", nil); r.Status != 200 || string(r.Body) != "null" {
		t.Errorf("tree: %d %s", r.Status, r.Body)
	}
	if r := e.do("DELETE", "/api/control/missions/"+m.ID, nil); r.Status != 200 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	if r := e.do("GET", "/api/control/missions/"+m.ID, nil); r.Status != 404 {
		t.Errorf("get after delete: %d", r.Status)
	}
	if r := e.do("GET", "/api/control/missions/current", nil); string(r.Body) != "null" {
		t.Errorf("current after deleting it: %s", r.Body)
	}
}

func TestBadInput(t *testing.T) {
	e := start(t, options{})
	var m mission
	e.do("POST", "/api/control/missions", nil).Decode(t, &m)
	tests := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"unknown backend", "POST", "/api/control/missions", map[string]any{"backend": "gpt-engineer"}, 400, "bad_request"},
		{"unknown workspace", "POST", "/api/control/missions", map[string]any{"workspace_id": "nope"}, 404, "not_found"},
		{"bad effort", "POST", "/api/control/missions", map[string]any{"model_effort": "extreme"}, 400, "bad_request"},
		{"malformed JSON", "POST", "/api/control/missions", "{", 400, "invalid_json"},
		{"wrong type", "POST", "/api/control/missions", map[string]any{"title": 3}, 400, "invalid_json"},
		{"empty message", "POST", "/api/control/message", map[string]any{"content": "  "}, 400, "bad_request"},
		{"message without body", "POST", "/api/control/message", nil, 400, "invalid_json"},
		{"message to unknown mission", "POST", "/api/control/message", map[string]any{"content": "hi", "mission_id": "nope"}, 404, "not_found"},
		{"bad status", "POST", "/api/control/missions/" + m.ID + "/status", map[string]any{"status": "done"}, 400, "bad_request"},
		{"unknown mission", "GET", "/api/control/missions/nope", nil, 404, "not_found"},
		{"unknown event type", "GET", "/api/control/missions/" + m.ID + "/events?types=bogus", nil, 400, "bad_request"},
		{"bad limit", "GET", "/api/control/missions?limit=0", nil, 400, "bad_request"},
		{"bad offset", "GET", "/api/control/missions/" + m.ID + "/events?offset=-1", nil, 400, "bad_request"},
		{"resume a pending mission", "POST", "/api/control/missions/" + m.ID + "/resume", nil, 400, "bad_request"},
		{"cancel an idle mission", "POST", "/api/control/missions/" + m.ID + "/cancel", nil, 409, "conflict"},
		{"remove unknown queued", "DELETE", "/api/control/queue/nope", nil, 404, "not_found"},
		{"bad Last-Event-ID", "GET", "/api/control/stream?last_event_id=x", nil, 400, "bad_request"},
		{"unknown provider", "POST", "/api/providers/nope/auth", map[string]any{"api_key": "k"}, 404, "not_found"},
		{"OAuth on a key-only provider", "POST", "/api/providers/amp/auth", map[string]any{}, 400, "bad_request"},
		{"blank api key", "POST", "/api/providers/openai/auth", map[string]any{"api_key": " "}, 400, "bad_request"},
		{"api key and code", "POST", "/api/providers/openai/auth", map[string]any{"api_key": "k", "code": "c"}, 400, "bad_request"},
		{"code of no sign-in", "POST", "/api/providers/openai/auth", map[string]any{"code": "c", "state": "forged"}, 400, "bad_request"},
		{"code without state", "POST", "/api/providers/openai/auth", map[string]any{"code": "c"}, 400, "bad_request"},
		{"provider auth not JSON", "POST", "/api/providers/openai/auth", "{", 400, "invalid_json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.body)
			var body struct{ Error, Code string }
			r.Decode(t, &body)
			if r.Status != tc.status || body.Code != tc.code || body.Error == "" {
				t.Errorf("%d %s, want %d %s", r.Status, r.Body, tc.status, tc.code)
			}
		})
	}
}

// TestMessageQueueAndTitle sends messages through the control session: the
// first creates a mission titled after it, and the turn (which cannot
// start on the fake operator) fails cleanly and frees the mission.
func TestMessageQueueAndTitle(t *testing.T) {
	e := start(t, options{})
	var resp struct {
		ID     string `json:"id"`
		Queued bool   `json:"queued"`
	}
	r := e.do("POST", "/api/control/message", map[string]any{"content": "Refactor the parser\nplease"})
	if r.Status != 200 {
		t.Fatalf("message: %d %s", r.Status, r.Body)
	}
	r.Decode(t, &resp)
	if resp.ID == "" || resp.Queued {
		t.Errorf("response %s", r.Body)
	}
	var cur mission
	e.do("GET", "/api/control/missions/current", nil).Decode(t, &cur)
	if cur.Title == nil || *cur.Title != "Refactor the parser" {
		t.Errorf("title = %v", cur.Title)
	}
	got := testwait.For(t, time.Minute, "the turn that cannot start fails", func() (mission, bool) {
		var m mission
		e.do("GET", "/api/control/missions/"+cur.ID, nil).Decode(t, &m)
		return m, m.Status == "failed"
	})
	if len(got.History) != 2 || got.History[0].Role != "user" || !strings.Contains(got.History[1].Content, "executable not found") {
		t.Errorf("history: %+v", got.History)
	}
	var evs []map[string]any
	e.do("GET", "/api/control/missions/"+cur.ID+"/events?types=user_message,error,assistant_message", nil).Decode(t, &evs)
	if len(evs) != 3 {
		t.Fatalf("events: %v", evs)
	}
	// The queue: with the limit reached, messages wait and can be removed.
	var q []map[string]any
	e.do("GET", "/api/control/queue", nil).Decode(t, &q)
	if len(q) != 0 {
		t.Errorf("queue: %v", q)
	}
}

func TestQueueOps(t *testing.T) {
	rs := redistest.Start(t)
	e := start(t, options{redis: rs, env: map[string]string{"SORTIE_MC_MAX_RUNNING_PER_USER": "1"}})
	var m mission
	e.do("POST", "/api/control/missions", nil).Decode(t, &m)
	// Hold the user's only slot with a fake run of another mission, so
	// every message waits.
	rs.Client.SAdd(context.Background(), "mc:u:{dev}:running", "other")
	var ids []string
	for i := range 3 {
		var resp struct {
			ID     string `json:"id"`
			Queued bool   `json:"queued"`
		}
		e.do("POST", "/api/control/message", map[string]any{"content": fmt.Sprintf("msg %d", i), "mission_id": m.ID}).Decode(t, &resp)
		if !resp.Queued {
			t.Fatalf("message %d not queued", i)
		}
		ids = append(ids, resp.ID)
	}
	var q []struct{ ID, Content, MissionID string }
	e.do("GET", "/api/control/queue", nil).Decode(t, &q)
	if len(q) != 3 || q[0].ID != ids[0] {
		t.Fatalf("queue: %+v", q)
	}
	if r := e.do("DELETE", "/api/control/queue/"+ids[1], nil); r.Status != 200 {
		t.Fatalf("remove: %d %s", r.Status, r.Body)
	}
	e.do("GET", "/api/control/queue", nil).Decode(t, &q)
	if len(q) != 2 || q[1].ID != ids[2] {
		t.Fatalf("after remove: %+v", q)
	}
	var cleared struct{ Cleared int }
	e.do("DELETE", "/api/control/queue", nil).Decode(t, &cleared)
	if cleared.Cleared != 2 {
		t.Errorf("cleared %d", cleared.Cleared)
	}
	var evs []map[string]any
	e.do("GET", "/api/control/missions/"+m.ID+"/events?types=user_message", nil).Decode(t, &evs)
	if len(evs) != 3 || evs[0]["metadata"].(map[string]any)["queued"] != true {
		t.Errorf("queued user messages: %v", evs)
	}
}

func TestOtherUsersMissionsAre404(t *testing.T) {
	is := newIssuer(t)
	e := start(t, options{env: is.authEnv(t)})
	alice, bob := e.as(is.sign(t, "alice", authn.RoleUser)), e.as(is.sign(t, "bob", authn.RoleUser))
	if r := e.do("GET", "/api/control/missions", nil); r.Status != 401 {
		t.Fatalf("no token: %d", r.Status)
	}
	var m mission
	alice.do("POST", "/api/control/missions", map[string]any{"title": "alice's"}).Decode(t, &m)
	for _, req := range []struct{ method, path string }{
		{"GET", "/api/control/missions/" + m.ID},
		{"GET", "/api/control/missions/" + m.ID + "/events"},
		{"POST", "/api/control/missions/" + m.ID + "/load"},
		{"POST", "/api/control/missions/" + m.ID + "/cancel"},
		{"POST", "/api/control/missions/" + m.ID + "/resume"},
		{"DELETE", "/api/control/missions/" + m.ID},
	} {
		if r := bob.do(req.method, req.path, nil); r.Status != 404 {
			t.Errorf("bob %s %s: %d, want 404", req.method, req.path, r.Status)
		}
	}
	if r := bob.do("POST", "/api/control/message", map[string]any{"content": "hi", "mission_id": m.ID}); r.Status != 404 {
		t.Errorf("bob messages alice's mission: %d", r.Status)
	}
	var list []mission
	bob.do("GET", "/api/control/missions", nil).Decode(t, &list)
	if len(list) != 0 {
		t.Errorf("bob sees %d missions", len(list))
	}
	if r := alice.do("POST", "/api/providers/openai/auth?shared=true", map[string]any{"api_key": "k"}); r.Status != 403 {
		t.Errorf("a user sets a shared provider key: %d", r.Status)
	}
	var h struct {
		AuthRequired bool   `json:"auth_required"`
		AuthMode     string `json:"auth_mode"`
	}
	e.do("GET", "/api/health", nil).Decode(t, &h)
	if !h.AuthRequired || h.AuthMode != "multi_user" {
		t.Errorf("health: %+v", h)
	}
}

// TestAdminsWatchOtherUsersMissions: an admin may read another user's
// mission, its events and its stream, and cancel it; loading, messaging,
// resuming, changing or deleting it stays its owner's (403 forbidden, and
// nothing stored changes), since that work would run in the owner's
// workspace with the owner's credentials.
func TestAdminsWatchOtherUsersMissions(t *testing.T) {
	is := newIssuer(t)
	rs := redistest.Start(t)
	e := start(t, options{redis: rs, env: is.authEnv(t)})
	alice, root := e.as(is.sign(t, "alice", authn.RoleUser)), e.as(is.sign(t, "root", authn.RoleAdmin))
	var m mission
	alice.do("POST", "/api/control/missions", map[string]any{"title": "alice's"}).Decode(t, &m)
	appendAs(t, e, "alice", m.ID, 3)

	var got mission
	if r := root.do("GET", "/api/control/missions/"+m.ID, nil); r.Status != 200 {
		t.Fatalf("admin reads alice's mission: %d %s", r.Status, r.Body)
	} else if r.Decode(t, &got); got.ID != m.ID {
		t.Errorf("admin read mission %q, want %q", got.ID, m.ID)
	}
	theirs, ours := alice.do("GET", "/api/control/missions/"+m.ID+"/events", nil), root.do("GET", "/api/control/missions/"+m.ID+"/events", nil)
	if ours.Status != 200 || theirs.Status != 200 || string(ours.Body) != string(theirs.Body) || !strings.Contains(string(ours.Body), m.ID) {
		t.Errorf("admin reads alice's events: %d %s; alice reads %d %s", ours.Status, ours.Body, theirs.Status, theirs.Body)
	}
	if r := root.do("GET", "/api/control/missions/"+m.ID+"/tree", nil); r.Status != 200 {
		t.Errorf("admin reads alice's tree: %d %s", r.Status, r.Body)
	}
	// Not running: the cancel is refused for that reason, not for access.
	wantError(t, root.do("POST", "/api/control/missions/"+m.ID+"/cancel", nil), 409, "conflict")
	// The stream of alice's mission, as she would see it.
	s := root.openStream("/api/control/stream?mission_id="+m.ID, "")
	s.next(t) // snapshot
	appendAs(t, e, "alice", m.ID, 2)
	for range 2 {
		if ev := s.next(t); ev.data["mission_id"] != m.ID {
			t.Fatalf("admin's stream of alice's mission sent %+v", ev)
		}
	}

	before := redisState(t, rs)
	for _, req := range []struct {
		method, path string
		body         any
	}{
		{"POST", "/api/control/missions/" + m.ID + "/load", nil},
		{"POST", "/api/control/missions/" + m.ID + "/resume", nil},
		{"POST", "/api/control/missions/" + m.ID + "/status", map[string]any{"status": "failed"}},
		{"DELETE", "/api/control/missions/" + m.ID, nil},
	} {
		wantError(t, root.do(req.method, req.path, req.body), 403, "forbidden")
	}
	wantError(t, root.do("GET", "/api/control/missions/nope", nil), 404, "not_found")
	if after := redisState(t, rs); after != before {
		t.Errorf("refused admin calls stored something:\nbefore\n%s\nafter\n%s", before, after)
	}
	var list []mission
	root.do("GET", "/api/control/missions", nil).Decode(t, &list)
	if len(list) != 0 {
		t.Errorf("the admin's own list holds %d of alice's missions", len(list))
	}
}

func TestHealthAndProviders(t *testing.T) {
	e := start(t, options{})
	var h struct {
		Status, AuthMode string
		AuthRequired     bool `json:"auth_required"`
		Services         map[string]string
	}
	r := e.do("GET", "/api/health", nil)
	r.Decode(t, &h)
	if h.Status != "ok" || h.AuthRequired || h.Services["redis"] != "ok" || h.Services["workspaces"] != "ok" {
		t.Errorf("health: %s", r.Body)
	}
	var p struct {
		Providers []struct {
			ID, Source string
			Configured bool
		}
	}
	e.do("GET", "/api/providers", nil).Decode(t, &p)
	if len(p.Providers) != 3 || p.Providers[0].Source != "config" {
		t.Errorf("providers: %+v", p)
	}
	if r := e.do("POST", "/api/providers/openai/auth", map[string]any{"api_key": "sk-new"}); r.Status != 200 {
		t.Fatalf("set key: %d %s", r.Status, r.Body)
	}
	e.do("GET", "/api/providers", nil).Decode(t, &p)
	if p.Providers[1].Source != "api" {
		t.Errorf("after set: %+v", p)
	}
	if r := e.do("DELETE", "/api/providers/openai/auth", nil); r.Status != 200 {
		t.Errorf("delete key: %d", r.Status)
	}
}

// A turn's last status is stored a moment before its driver drops the
// run: a client that saw the mission stop being active and deletes it must
// not be told it is still running.
func TestDeleteWaitsOutAFinishingRun(t *testing.T) {
	e := start(t, options{})
	var m mission
	e.do("POST", "/api/control/missions", nil).Decode(t, &m)
	ctx := t.Context()
	// Another replica drives a run of the mission; its turn has ended (the
	// mission is not active) and it is about to drop the run.
	const other = "another-replica"
	if _, err := e.svc.Control.Enqueue(ctx, "dev", control.Message{ID: "m1", Content: "hi", MissionID: m.ID}, 10); err != nil {
		t.Fatal(err)
	}
	run, err := e.svc.Control.TryStart(ctx, "dev", m.ID, other, 10, time.Minute, "turn-1", "asst-1")
	if err != nil || run == nil {
		t.Fatalf("start a run for another replica: %v %v", run, err)
	}
	finished := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond) // the driver's last steps, not a wait for a condition
		finished <- e.svc.Control.Finish(context.Background(), "dev", m.ID, other)
	}()
	if r := e.do("DELETE", "/api/control/missions/"+m.ID, nil); r.Status != 200 {
		t.Fatalf("delete of a mission whose run is finishing: %d %s, want 200 once the run is gone", r.Status, r.Body)
	}
	if err := <-finished; err != nil {
		t.Fatal(err)
	}
	if r := e.do("GET", "/api/control/missions/"+m.ID, nil); r.Status != 404 {
		t.Errorf("the mission after delete: %d", r.Status)
	}
}
