package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"sortie.dev/api"
	"sortie.dev/services/kit/apitest"
	"sortie.dev/services/kit/openapitest"
	"sortie.dev/services/kit/redistest"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/mission-control/internal/config"
)

// env is one mission-control serving real HTTP on a real Redis.
type env struct {
	t      testing.TB
	redis  *redistest.Server
	svc    *Service
	base   string
	client *http.Client
	stop   context.CancelFunc
	done   chan error
	token  string // bearer token of requests, when authentication is on
}

// as returns a view of e that sends token.
func (e *env) as(token string) *env {
	c := *e
	c.token = token
	return &c
}

// fakeOperator answers workspace lookups like the workspace-operator does
// (the default host workspace and "ws-ok" exist) and refuses to start
// processes, so a turn ends at once with a start failure. The runner is
// tested against the real operator in node_test.go.
func fakeOperator(t testing.TB) string {
	mux := http.NewServeMux()
	ws := func(id string) map[string]any {
		return map[string]any{"id": id, "name": "ws-" + id[:4], "workspace_type": "host", "path": "/workspaces", "status": "ready"}
	}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"status":"ready"}`)) })
	mux.HandleFunc("GET /api/workspaces/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if id != "00000000-0000-0000-0000-000000000000" && id != "ws-ok" {
			w.WriteHeader(404)
			w.Write([]byte(`{"error":"no such workspace","code":"not_found"}`))
			return
		}
		json.NewEncoder(w).Encode(ws(id))
	})
	mux.HandleFunc("POST /api/workspaces/{id}/exec", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"exit_code":0,"stdout":"","stderr":"","timed_out":false}`))
	})
	mux.HandleFunc("POST /api/workspaces/{id}/processes", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		w.Write([]byte(`{"error":"executable not found: claude","code":"start_failed"}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

type options struct {
	redis      *redistest.Server
	workspaces string
	env        map[string]string
}

func testConfig(t testing.TB, o options) *config.Config {
	t.Helper()
	vars := map[string]string{
		"SORTIE_REDIS_URL": o.redis.URL, "SORTIE_AUTH_DEV_MODE": "true", "SORTIE_WORKSPACES_URL": o.workspaces,
		"SORTIE_LISTEN_ADDR": "127.0.0.1:0", "SORTIE_MC_SSE_KEEPALIVE": "200ms", "SORTIE_MC_LEASE_TTL": "2s",
		"SORTIE_MC_CANCEL_GRACE": "1s", "SORTIE_MC_ANTHROPIC_API_KEY": "sk-ant-api03-test",
		"SORTIE_MC_OPENAI_API_KEY": "sk-test", "SORTIE_MC_AMP_API_KEY": "amp-test",
	}
	for k, v := range o.env {
		vars[k] = v
	}
	cfg, err := config.Load(nil, func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func start(t testing.TB, o options) *env {
	t.Helper()
	if o.redis == nil {
		o.redis = redistest.Start(t)
	}
	if o.workspaces == "" {
		o.workspaces = fakeOperator(t)
	}
	cfg := testConfig(t, o)
	if !cfg.AuthDevMode {
		publishPrincipals(t, o.redis, testUsers)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("MC_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	rdb, err := redistestClient(o.redis)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := Build(cfg, log, rdb)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{t: t, redis: o.redis, svc: svc, base: "http://" + ln.Addr().String(), stop: cancel, done: make(chan error, 1),
		client: openapitest.Load(t, api.OpenAPI).Client(t, &http.Client{Timeout: testwait.Scaled(time.Minute)})}
	go func() { e.done <- svc.Serve(ctx, ln) }()
	t.Cleanup(e.shutdown)
	// Serve subscribes the hub before it accepts connections.
	testwait.Eventually(t, 10*time.Second, "mission-control serves /healthz", func() (bool, string) {
		resp, err := http.Get(e.base + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return true, ""
	})
	return e
}

var shutdownOnce sync.Map

func (e *env) shutdown() {
	if _, done := shutdownOnce.LoadOrStore(e, true); done {
		return
	}
	e.stop()
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("serve: %v", err)
		}
	case <-testwait.After(30 * time.Second):
		e.t.Errorf("service did not stop within %v", testwait.Scaled(30*time.Second))
	}
}

type response = apitest.Response

func (e *env) do(method, path string, body any) response {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		if s, ok := body.(string); ok {
			rd = strings.NewReader(s)
		} else {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	return apitest.Read(e.t, resp)
}

// sseEvent is one event read from a stream.
type sseEvent struct {
	name, id string
	data     map[string]any
}

// stream is an open SSE connection.
type stream struct {
	resp   *http.Response
	events chan sseEvent
	closed chan struct{}
}

func (e *env) openStream(path, lastID string) *stream {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.base+path, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	if e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("stream: %d %s", resp.StatusCode, b)
	}
	s := &stream{resp: resp, events: make(chan sseEvent, 10000), closed: make(chan struct{})}
	go func() {
		defer close(s.closed)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 0, 1<<20), 16<<20)
		var cur sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.name != "" {
					s.events <- cur
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				cur.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "id: "):
				cur.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &cur.data)
			case strings.HasPrefix(line, ": keepalive"):
				s.events <- sseEvent{name: "keepalive"}
			}
		}
	}()
	e.t.Cleanup(func() { resp.Body.Close() })
	return s
}

// next returns the next event that is not a keepalive.
func (s *stream) next(t testing.TB) sseEvent {
	t.Helper()
	// One deadline for the wait, not one per keepalive (which would wait
	// forever on a stream that only keeps alive).
	deadline := testwait.After(30 * time.Second)
	for {
		select {
		case ev := <-s.events:
			if ev.name != "keepalive" {
				return ev
			}
		case <-deadline:
			t.Fatalf("no event within %v", testwait.Scaled(30*time.Second))
		}
	}
}

// until collects events (no keepalives) until one satisfies stop.
func (s *stream) until(t testing.TB, stop func(sseEvent) bool) []sseEvent {
	t.Helper()
	var out []sseEvent
	for {
		ev := s.next(t)
		out = append(out, ev)
		if stop(ev) {
			return out
		}
	}
}

func redistestClient(s *redistest.Server) (*redisClient, error) {
	return newRedisClient(s.URL)
}
