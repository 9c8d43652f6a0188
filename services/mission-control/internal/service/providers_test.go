package service

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/redistest"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/mission-control/internal/providers/oauthtest"
)

// recordingOperator answers workspace lookups like fakeOperator and
// records the environment of every process a turn starts (then refuses
// it, so the turn fails at once).
func recordingOperator(t testing.TB) (string, chan map[string]string) {
	starts := make(chan map[string]string, 10)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"status":"ready"}`)) })
	mux.HandleFunc("GET /api/workspaces/{id}", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"id": r.PathValue("id"), "name": "host", "workspace_type": "host", "path": "/workspaces", "status": "ready"})
	})
	mux.HandleFunc("POST /api/workspaces/{id}/exec", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"exit_code":0,"stdout":"","stderr":"","timed_out":false}`))
	})
	mux.HandleFunc("POST /api/workspaces/{id}/processes", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Env map[string]string }
		json.NewDecoder(r.Body).Decode(&req)
		starts <- req.Env
		w.WriteHeader(400)
		w.Write([]byte(`{"error":"executable not found: claude","code":"start_failed"}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL, starts
}

func keyFile(t testing.TB) string {
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte(strings.Repeat("5e", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func oauthEnv(srv *oauthtest.Server, provider string) map[string]string {
	p := "SORTIE_MC_OAUTH_" + strings.ToUpper(provider) + "_"
	return map[string]string{p + "AUTHORIZE_URL": srv.URL + "/authorize", p + "TOKEN_URL": srv.URL + "/token", p + "CLIENT_ID": srv.ClientID}
}

// TestProviderOAuthAndRefreshBeforeRun signs in to Anthropic through the
// API against a stand-in OAuth server, checks that only ciphertext reaches
// Redis, and runs a turn: its short-lived token is refreshed before the
// run and the fresh one is in the CLI's environment.
func TestProviderOAuthAndRefreshBeforeRun(t *testing.T) {
	rs := redistest.Start(t)
	// Tokens live 30 s, inside the refresh margin: "expired" at once.
	oa := oauthtest.Start(t, "claude-client", "sk-ant-oat01-", 30)
	ops, starts := recordingOperator(t)
	env := oauthEnv(oa, "anthropic")
	env["SORTIE_MC_CREDENTIALS_KEY_FILE"] = keyFile(t)
	e := start(t, options{redis: rs, workspaces: ops, env: env})

	var begin struct {
		Success       bool
		AuthURL       string `json:"auth_url"`
		State, Method string
		ExpiresIn     int `json:"expires_in"`
	}
	r := e.do("POST", "/api/providers/anthropic/auth", nil)
	if r.Status != 200 {
		t.Fatalf("start: %d %s", r.Status, r.Body)
	}
	r.Decode(t, &begin)
	if !begin.Success || begin.Method != "code" || begin.State == "" || begin.ExpiresIn != 600 || !strings.HasPrefix(begin.AuthURL, oa.URL+"/authorize?") {
		t.Fatalf("start: %s", r.Body)
	}
	redirect := oauthtest.SignIn(t, begin.AuthURL)
	if redirect.Query().Get("state") != begin.State {
		t.Fatalf("redirect %s", redirect)
	}
	// Anthropic's page shows code#state.
	r = e.do("POST", "/api/providers/anthropic/auth", map[string]any{"code": redirect.Query().Get("code") + "#" + begin.State})
	if r.Status != 200 {
		t.Fatalf("finish: %d %s", r.Status, r.Body)
	}
	var p struct {
		Providers []struct {
			ID, Source string
			AuthType   string   `json:"auth_type"`
			Methods    []string `json:"auth_methods"`
		}
	}
	e.do("GET", "/api/providers", nil).Decode(t, &p)
	if len(p.Providers) != 3 || p.Providers[0].ID != "anthropic" || p.Providers[0].Source != "api" || p.Providers[0].AuthType != "oauth" ||
		strings.Join(p.Providers[0].Methods, ",") != "api_key,oauth" {
		t.Errorf("providers: %+v", p)
	}

	var m mission
	e.do("POST", "/api/control/missions", map[string]any{"backend": "claudecode"}).Decode(t, &m)
	e.do("POST", "/api/control/message", map[string]any{"content": "hi", "mission_id": m.ID})
	var got map[string]string
	select {
	case got = <-starts:
	case <-testwait.After(30 * time.Second):
		t.Fatalf("no process started within %v", testwait.Scaled(30*time.Second))
	}
	if oa.Refreshes() != 1 {
		t.Errorf("%d refreshes before the run, want 1", oa.Refreshes())
	}
	tok := got["CLAUDE_CODE_OAUTH_TOKEN"]
	if !strings.HasPrefix(tok, "sk-ant-oat01-at-") || got["ANTHROPIC_API_KEY"] != "" {
		t.Errorf("CLI environment: %v", got)
	}
	if d := redisDump(t, rs); strings.Contains(d, tok) || strings.Contains(d, "sk-ant-oat01") || strings.Contains(d, "rt-") {
		t.Errorf("plaintext credential in Redis")
	}
	if r := e.do("DELETE", "/api/providers/anthropic/auth", nil); r.Status != 200 {
		t.Errorf("delete: %d %s", r.Status, r.Body)
	}
}

// redisDump renders every key and value of Redis as text.
func redisDump(t *testing.T, rs *redistest.Server) string {
	ctx := context.Background()
	var b strings.Builder
	for _, k := range rs.Client.Keys(ctx, "*").Val() {
		fmt.Fprintln(&b, k)
		switch rs.Client.Type(ctx, k).Val() {
		case "string":
			fmt.Fprintln(&b, rs.Client.Get(ctx, k).Val())
		case "hash":
			fmt.Fprintln(&b, rs.Client.HGetAll(ctx, k).Val())
		case "list":
			fmt.Fprintln(&b, rs.Client.LRange(ctx, k, 0, -1).Val())
		case "set":
			fmt.Fprintln(&b, rs.Client.SMembers(ctx, k).Val())
		case "zset":
			fmt.Fprintln(&b, rs.Client.ZRange(ctx, k, 0, -1).Val())
		case "stream":
			fmt.Fprintln(&b, rs.Client.XRange(ctx, k, "-", "+").Val())
		}
	}
	return b.String()
}

// TestProviderAuthErrors: API-level failures of the OAuth calls, as 4xx
// and 5xx JSON.
func TestProviderAuthErrors(t *testing.T) {
	oa := oauthtest.Start(t, "codex-client", "", 3600)
	vars := oauthEnv(oa, "openai")
	vars["SORTIE_MC_CREDENTIALS_KEY_FILE"] = keyFile(t)
	e := start(t, options{env: vars})
	var begin struct{ State string }
	e.do("POST", "/api/providers/openai/auth", nil).Decode(t, &begin)

	is := newIssuer(t)
	noKey := start(t, options{env: is.authEnv(t)})
	admin := noKey.as(is.sign(t, "root", authn.RoleAdmin))
	tests := []struct {
		name   string
		e      *env
		body   any
		status int
		code   string
	}{
		{"wrong code", e, map[string]any{"code": "bogus", "state": begin.State}, 400, "oauth_failed"},
		{"state used up", e, map[string]any{"code": "bogus", "state": begin.State}, 400, "bad_request"},
		{"no credentials key: api key", admin, map[string]any{"api_key": "sk-x"}, 503, "credentials_key_missing"},
		{"no credentials key: oauth", admin, nil, 503, "credentials_key_missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.e.do("POST", "/api/providers/openai/auth", tc.body)
			var body struct{ Error, Code string }
			r.Decode(t, &body)
			if r.Status != tc.status || body.Code != tc.code || body.Error == "" {
				t.Errorf("%d %s, want %d %s", r.Status, r.Body, tc.status, tc.code)
			}
		})
	}
}

// TestHealthReportsServices: the configured services are checked and one
// that is down makes the status degraded, still 200.
func TestHealthReportsServices(t *testing.T) {
	library := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			w.WriteHeader(404)
			return
		}
		w.Write([]byte(`{"status":"ready"}`))
	}))
	t.Cleanup(library.Close)
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	is := newIssuer(t)
	tests := []struct {
		name    string
		env     map[string]string
		status  string
		service map[string]string
	}{
		{"dev mode", map[string]string{"SORTIE_LIBRARY_URL": library.URL}, "ok",
			map[string]string{"redis": "ok", "workspaces": "ok", "library": "ok"}},
		{"library down", map[string]string{"SORTIE_LIBRARY_URL": dead.URL}, "degraded",
			map[string]string{"redis": "ok", "workspaces": "ok", "library": "error"}},
		{"auth", is.authEnv(t), "ok", map[string]string{"redis": "ok", "workspaces": "ok", "auth": "ok"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, options{env: tc.env})
			var h struct {
				Status   string
				Services map[string]string
			}
			r := e.do("GET", "/api/health", nil)
			r.Decode(t, &h)
			if r.Status != 200 || h.Status != tc.status || fmt.Sprint(h.Services) != fmt.Sprint(tc.service) {
				t.Errorf("%d %s", r.Status, r.Body)
			}
		})
	}
}

// TestMetrics: after a turn, a takeover and a stream, /metrics has the
// service's own metrics.
func TestMetrics(t *testing.T) {
	rs := redistest.Start(t)
	e := start(t, options{redis: rs})
	var m mission
	e.do("POST", "/api/control/missions", map[string]any{"backend": "codex"}).Decode(t, &m)
	s := e.openStream("/api/control/stream", "")
	s.next(t) // status snapshot
	e.do("POST", "/api/control/message", map[string]any{"content": "hi", "mission_id": m.ID})
	s.until(t, func(ev sseEvent) bool { return ev.name == "mission_status_changed" && ev.data["status"] == "failed" })

	// A run whose driver vanished (no lease) is taken over and finished.
	var other mission
	e.do("POST", "/api/control/missions", map[string]any{"backend": "amp"}).Decode(t, &other)
	ctx := context.Background()
	msg := `{"id":"m1","content":"hello","agent":null,"mission_id":"` + other.ID + `"}`
	rs.Client.HSet(ctx, "mc:m:{"+other.ID+"}:run", "user", "dev", "turn", "0123456789abcdef", "assistant", "a1", "msg", msg,
		"emitted", 0, "offset", 0, "started_at", time.Now().Add(-90*time.Second).UTC().Format(time.RFC3339Nano))
	rs.Client.SAdd(ctx, "mc:runs", other.ID)
	// Two messages wait behind a held slot.
	var third mission
	e.do("POST", "/api/control/missions", nil).Decode(t, &third)
	rs.Client.HSet(ctx, "mc:m:{"+third.ID+"}:run", "user", "dev") // busy, not a real run
	for range 2 {
		e.do("POST", "/api/control/message", map[string]any{"content": "later", "mission_id": third.ID})
	}

	want := []struct {
		re  string
		min float64
	}{
		{`sortie_mc_runs_total\{backend="codex",outcome="failed"\} (\S+)`, 1},
		{`sortie_mc_runs_total\{backend="amp",outcome="failed"\} (\S+)`, 1},
		{`sortie_mc_turn_duration_seconds_count\{backend="codex"\} (\S+)`, 1},
		{`sortie_mc_turn_duration_seconds_sum\{backend="amp"\} (\S+)`, 90},
		{`sortie_mc_events_appended_total\{kind="user_message"\} (\S+)`, 2},
		{`sortie_mc_events_appended_total\{kind="mission_status_changed"\} (\S+)`, 4},
		{`sortie_mc_run_takeovers_total (\S+)`, 1},
		{`sortie_mc_sse_clients (\S+)`, 1},
		{`sortie_mc_queue_depth (\S+)`, 2},
	}
	testwait.Eventually(t, time.Minute, "/metrics has every metric", func() (bool, string) {
		resp, err := http.Get(e.base + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, w := range want {
			m := regexp.MustCompile(`(?m)^` + w.re + `$`).FindSubmatch(b)
			if m == nil {
				return false, "missing " + w.re
			}
			if v, _ := strconv.ParseFloat(string(m[1]), 64); v < w.min {
				return false, fmt.Sprintf("%s = %v, want ≥ %v", w.re, v, w.min)
			}
		}
		return true, ""
	})
	if !strings.Contains(string(e.do("GET", "/api/health", nil).Body), `"ok"`) {
		t.Error("health")
	}
}
