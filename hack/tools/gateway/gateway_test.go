package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"sortie.dev/api"
	"sortie.dev/services/kit/testwait"
)

// upstreams starts one real HTTP server per service; each answers with
// its name, the path it saw and the forwarding headers.
func upstreams(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, svc := range api.Services() {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{
				"service": svc, "path": r.URL.RequestURI(), "xff": r.Header.Get("X-Forwarded-For"),
				"host": r.Host, "auth": r.Header.Get("Authorization"),
			})
		}))
		t.Cleanup(srv.Close)
		out[svc] = srv.URL
	}
	return out
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func start(t *testing.T, ups map[string]string) *httptest.Server {
	t.Helper()
	g, err := New(ups, quiet())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return srv
}

// seen sends req through the gateway and returns what the upstream saw.
func seen(t *testing.T, req *http.Request) map[string]string {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&got)
	return got
}

func TestRoutesEveryPrefixToItsService(t *testing.T) {
	gw := start(t, upstreams(t))
	for _, r := range api.Routes() {
		path := r.Prefix + "/x?token=abc"
		req, _ := http.NewRequest("GET", gw.URL+path, nil)
		req.Header.Set("Authorization", "Bearer t")
		got := seen(t, req)
		if got["service"] != r.Service || got["path"] != path || got["xff"] != "127.0.0.1" || got["auth"] != "Bearer t" {
			t.Errorf("%s went to %v", path, got)
		}
		if !strings.HasPrefix(got["host"], "127.0.0.1:") || got["host"] != strings.TrimPrefix(gw.URL, "http://") {
			t.Errorf("%s: upstream saw Host %q, want the gateway's", path, got["host"])
		}
	}
}

func TestErrorsAreJSON(t *testing.T) {
	ups := upstreams(t)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // a service that is not running
	ups[api.ServiceLibrary] = down.URL
	gw := start(t, ups)
	tests := map[string]struct {
		path string
		want int
		code string
	}{
		"outside the table": {"/api/nope", 404, "not_found"},
		"not a segment":     {"/api/authx", 404, "not_found"},
		"service down":      {"/api/library/skill", 502, "service_unavailable"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp, err := http.Get(gw.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct{ Error, Code string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != tc.want || body.Code != tc.code || body.Error == "" {
				t.Errorf("got %d %+v (%v), want %d %s", resp.StatusCode, body, err, tc.want, tc.code)
			}
		})
	}
}

// An SSE event reaches the client while the upstream is still streaming.
func TestStreamsAreNotBuffered(t *testing.T) {
	ups := upstreams(t)
	release := make(chan struct{})
	sse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "id: 1\nevent: status\ndata: {}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer sse.Close()
	defer close(release)
	ups[api.ServiceMissionControl] = sse.URL
	gw := start(t, ups)

	resp, err := http.Get(gw.URL + "/api/control/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		if l != "id: 1" {
			t.Errorf("first line %q", l)
		}
	case <-testwait.After(5 * time.Second):
		t.Fatal("the first event did not come through while the stream was open")
	}
}

func TestNewRefusesIncompleteTables(t *testing.T) {
	ups := upstreams(t)
	delete(ups, api.ServiceAuth)
	ups["billing"] = "http://127.0.0.1:1"
	ups[api.ServiceLibrary] = "library:8080"
	_, err := New(ups, quiet())
	if err == nil {
		t.Fatal("New accepted a table without auth")
	}
	for _, want := range []string{"no upstream for auth", "unknown service billing", "upstream of library"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// The gateway is the edge: what a client says about its own address is
// dropped, and the upstream sees only the peer the gateway saw. Auth,
// trusting only the gateway's address, counts logins by that.
func TestClientForwardingHeadersAreReplaced(t *testing.T) {
	gw := start(t, upstreams(t))
	for name, h := range map[string]map[string]string{
		"none":            {},
		"X-Forwarded-For": {"X-Forwarded-For": "1.2.3.4"},
		"a chain":         {"X-Forwarded-For": "1.2.3.4, 5.6.7.8"},
		"two headers":     {"X-Forwarded-For": "1.2.3.4", "Forwarded": "for=5.6.7.8"},
	} {
		req, _ := http.NewRequest("POST", gw.URL+"/api/auth/login", strings.NewReader(`{}`))
		for k, v := range h {
			req.Header.Set(k, v)
		}
		req.Header.Add("X-Forwarded-For", "9.9.9.9")
		if got := seen(t, req); got["xff"] != "127.0.0.1" {
			t.Errorf("%s: upstream saw X-Forwarded-For %q, want only the peer 127.0.0.1", name, got["xff"])
		}
	}
}
