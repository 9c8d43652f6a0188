package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/kit/logging"
	"sortie.dev/services/kit/testwait"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type running struct {
	srv  *Server
	url  string
	logs *syncBuffer
	stop func() error
}

// start runs a real server on a loopback port until the test ends.
func start(t *testing.T, opts Options, routes func(*Server)) *running {
	t.Helper()
	logs := &syncBuffer{}
	opts.Logger = logging.New(logs, "test", slog.LevelDebug)
	srv, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if routes != nil {
		routes(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() { cancel(); stopErr = <-done })
		return stopErr
	}
	t.Cleanup(func() { _ = stop() })
	return &running{srv: srv, url: "http://" + ln.Addr().String(), logs: logs, stop: stop}
}

func decodeError(t *testing.T, resp *http.Response) apierror.Error {
	t.Helper()
	defer resp.Body.Close()
	var e apierror.Error
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("error body is not JSON: %v", err)
	}
	if e.Code == "" || e.Message == "" {
		t.Fatalf("error body lacks error or code: %+v", e)
	}
	return e
}

func TestErrorsAreJSON(t *testing.T) {
	r := start(t, Options{}, func(s *Server) {
		s.Engine.GET("/boom", func(c *gin.Context) { panic("kaboom") })
		s.Engine.POST("/echo", func(c *gin.Context) {
			var v map[string]any
			if err := apierror.DecodeJSON(c.Request, &v); err != nil {
				apierror.Respond(c, err)
				return
			}
			c.JSON(200, v)
		})
	})
	tests := map[string]struct {
		method, path, body string
		wantStatus         int
		wantCode           string
	}{
		"panic":          {method: "GET", path: "/boom", wantStatus: 500, wantCode: "internal"},
		"unknown route":  {method: "GET", path: "/nope", wantStatus: 404, wantCode: "not_found"},
		"wrong method":   {method: "DELETE", path: "/boom", wantStatus: 405, wantCode: "method_not_allowed"},
		"oversized body": {method: "POST", path: "/echo", body: `{"a":"` + strings.Repeat("x", 2<<20) + `"}`, wantStatus: 413, wantCode: "body_too_large"},
		"malformed body": {method: "POST", path: "/echo", body: `{"a":`, wantStatus: 400, wantCode: "invalid_json"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, r.url+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if e := decodeError(t, resp); e.Code != tc.wantCode {
				t.Errorf("code = %q, want %q", e.Code, tc.wantCode)
			}
		})
	}
	if !strings.Contains(r.logs.String(), `"panic":"kaboom"`) {
		t.Errorf("panic was not logged:\n%s", r.logs.String())
	}
}

func TestRequestIDAndAccessLog(t *testing.T) {
	r := start(t, Options{}, func(s *Server) {
		s.Engine.GET("/items/:id", func(c *gin.Context) {
			s.Logger().InfoContext(c.Request.Context(), "handler ran")
			c.Status(204)
		})
	})
	req, _ := http.NewRequest("GET", r.url+"/items/42?token=secret-token", nil)
	req.Header.Set(RequestIDHeader, "abc-123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get(RequestIDHeader); got != "abc-123" {
		t.Errorf("request id header = %q, want the caller's abc-123", got)
	}
	logs := r.logs.String()
	var handlerLine, accessLine map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		switch rec["msg"] {
		case "handler ran":
			handlerLine = rec
		case "request":
			accessLine = rec
		}
	}
	if handlerLine["request_id"] != "abc-123" || accessLine["request_id"] != "abc-123" {
		t.Errorf("request id missing from log lines:\n%s", logs)
	}
	if accessLine["route"] != "/items/:id" || accessLine["status"] != float64(204) {
		t.Errorf("access line = %v", accessLine)
	}
	if strings.Contains(logs, "secret-token") {
		t.Errorf("the query string (which may hold a token) was logged:\n%s", logs)
	}

	// A hostile id is replaced by a generated one.
	req, _ = http.NewRequest("GET", r.url+"/items/1", nil)
	req.Header.Set(RequestIDHeader, "bad id {with} spaces")
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if got := resp.Header.Get(RequestIDHeader); len(got) != 24 {
		t.Errorf("generated request id = %q, want 24 hex characters", got)
	}
}

func TestReadiness(t *testing.T) {
	var mu sync.Mutex
	var depErr error
	r := start(t, Options{}, func(s *Server) {
		s.AddReadinessCheck("redis", func(context.Context) error { mu.Lock(); defer mu.Unlock(); return depErr })
	})
	get := func(path string) (int, map[string]any) {
		resp, err := http.Get(r.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	if code, _ := get("/readyz"); code != 200 {
		t.Errorf("readyz = %d with a healthy dependency, want 200", code)
	}
	mu.Lock()
	depErr = errors.New("dial tcp: connection refused")
	mu.Unlock()
	code, body := get("/readyz")
	if code != 503 {
		t.Errorf("readyz = %d with a failing dependency, want 503", code)
	}
	if checks, _ := body["checks"].(map[string]any); checks["redis"] != "dial tcp: connection refused" {
		t.Errorf("readyz body = %v, want the failing check named", body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("healthz = %d, want 200 even when a dependency fails", code)
	}
}

func TestMetrics(t *testing.T) {
	r := start(t, Options{}, func(s *Server) {
		s.Engine.GET("/missions/:id", func(c *gin.Context) { c.Status(200) })
	})
	for _, id := range []string{"a", "b", "c"} {
		resp, _ := http.Get(r.url + "/missions/" + id)
		resp.Body.Close()
	}
	resp, err := http.Get(r.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`sortie_http_requests_total{method="GET",route="/missions/:id",status="200"} 3`,
		`sortie_http_request_duration_seconds_count{method="GET",route="/missions/:id"} 3`,
		`go_goroutines`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

func TestCORS(t *testing.T) {
	r := start(t, Options{CORSOrigins: []string{"https://app.example.com"}}, func(s *Server) {
		s.Engine.GET("/x", func(c *gin.Context) { c.Status(200) })
	})
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest("OPTIONS", r.url+"/x", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := preflight("https://app.example.com")
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("allowed preflight: %d, ACAO %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	if h := resp.Header.Get("Access-Control-Allow-Headers"); !strings.Contains(h, "Authorization") || !strings.Contains(h, "Content-Type") {
		t.Errorf("allowed headers = %q", h)
	}
	if resp := preflight("https://evil.example.com"); resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("a foreign origin was allowed")
	}
	if _, err := New(Options{CORSOrigins: []string{"app.example.com"}}); err == nil {
		t.Error("an origin without a scheme must be rejected")
	}
}

// TestShutdownDrainsThenClosesStreams checks the order users rely on: a
// request in flight finishes, an SSE stream is ended (not left to hold the
// process for the whole timeout), and the server stops promptly.
func TestShutdownDrainsThenClosesStreams(t *testing.T) {
	slowStarted := make(chan struct{})
	releaseSlow := make(chan struct{})
	streamEnded := make(chan time.Time, 1)
	var slowFinished time.Time
	var mu sync.Mutex
	r := start(t, Options{DrainTimeout: 10 * time.Second}, func(s *Server) {
		s.Engine.GET("/slow", func(c *gin.Context) {
			close(slowStarted)
			<-releaseSlow
			mu.Lock()
			slowFinished = time.Now()
			mu.Unlock()
			c.String(200, "done")
		})
		s.Engine.GET("/stream", func(c *gin.Context) {
			ctx := StreamContext(c)
			c.Header("Content-Type", "text/event-stream")
			c.Writer.WriteHeader(200)
			fmt.Fprint(c.Writer, ": hello\n\n")
			c.Writer.Flush()
			<-ctx.Done()
			streamEnded <- time.Now()
		})
	})

	streamResp, err := http.Get(r.url + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer streamResp.Body.Close()
	if line, _ := bufio.NewReader(streamResp.Body).ReadString('\n'); line != ": hello\n" {
		t.Fatalf("stream first line = %q", line)
	}
	slowResult := make(chan string, 1)
	go func() {
		resp, err := http.Get(r.url + "/slow")
		if err != nil {
			slowResult <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slowResult <- string(b)
	}()
	<-slowStarted

	stopped := make(chan error, 1)
	begin := time.Now()
	go func() { stopped <- r.stop() }()

	// While the slow request runs, the stream stays open and no new
	// connection is accepted.
	select {
	case <-streamEnded:
		t.Fatal("the stream was closed before ordinary requests drained")
	case <-time.After(200 * time.Millisecond): // a window to see it stay open, not a wait
	}
	if _, err := net.DialTimeout("tcp", strings.TrimPrefix(r.url, "http://"), time.Second); err == nil {
		t.Error("a new connection was accepted after shutdown began")
	}
	close(releaseSlow)
	if got := <-slowResult; got != "done" {
		t.Errorf("in-flight request got %q, want it to finish with done", got)
	}
	var ended time.Time
	select {
	case ended = <-streamEnded:
	case <-testwait.After(5 * time.Second):
		t.Fatal("the stream was never closed")
	}
	mu.Lock()
	if ended.Before(slowFinished) {
		t.Error("the stream ended before the in-flight request finished")
	}
	mu.Unlock()
	if err := <-stopped; err != nil {
		t.Errorf("shutdown error: %v", err)
	}
	if took := time.Since(begin); took > 5*time.Second {
		t.Errorf("shutdown took %v; the open stream held it", took)
	}
}

// A client's address is the TCP peer unless the peer is a trusted proxy;
// then it is the rightmost untrusted address of X-Forwarded-For. Nothing a
// client sends itself chooses it.
func TestClientAddress(t *testing.T) {
	tests := map[string]struct {
		trusted []string
		from    string // local address the client dials from
		headers map[string]string
		want    string
	}{
		"no proxy trusted: the peer": {
			from: "127.0.0.31", headers: map[string]string{"X-Forwarded-For": "1.2.3.4"}, want: "127.0.0.31",
		},
		"untrusted peer's X-Forwarded-For is ignored": {
			trusted: []string{"127.0.0.1"}, from: "127.0.0.32", headers: map[string]string{"X-Forwarded-For": "1.2.3.4"}, want: "127.0.0.32",
		},
		"trusted proxy's X-Forwarded-For": {
			trusted: []string{"127.0.0.1"}, from: "127.0.0.1", headers: map[string]string{"X-Forwarded-For": "203.0.113.9"}, want: "203.0.113.9",
		},
		"a client's forged entry left of the proxy's": {
			trusted: []string{"127.0.0.1"}, from: "127.0.0.1", headers: map[string]string{"X-Forwarded-For": "1.2.3.4, 203.0.113.9"}, want: "203.0.113.9",
		},
		"a chain of trusted proxies": {
			trusted: []string{"127.0.0.1", "10.0.0.0/8"}, from: "127.0.0.1", headers: map[string]string{"X-Forwarded-For": "1.2.3.4, 203.0.113.9, 10.1.2.3"}, want: "203.0.113.9",
		},
		"IPv6 client behind the proxy": {
			trusted: []string{"127.0.0.1"}, from: "127.0.0.1", headers: map[string]string{"X-Forwarded-For": "2001:db8::7"}, want: "2001:db8::7",
		},
		"X-Real-IP is never believed": {
			trusted: []string{"127.0.0.1"}, from: "127.0.0.1", headers: map[string]string{"X-Real-IP": "1.2.3.4"}, want: "127.0.0.1",
		},
		"garbage X-Forwarded-For from a trusted proxy": {
			trusted: []string{"127.0.0.1"}, from: "127.0.0.1", headers: map[string]string{"X-Forwarded-For": "not-an-ip"}, want: "127.0.0.1",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := start(t, Options{TrustedProxies: tc.trusted}, func(s *Server) {
				s.Engine.GET("/ip", func(c *gin.Context) { c.String(200, c.ClientIP()) })
			})
			d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(tc.from)}}
			client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: testwait.Scaled(5 * time.Second)}
			req, _ := http.NewRequest("GET", r.url+"/ip", nil)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			if string(got) != tc.want {
				t.Errorf("client address = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNewRefusesBadTrustedProxies(t *testing.T) {
	if _, err := New(Options{TrustedProxies: []string{"ingress-nginx"}}); err == nil {
		t.Error("New accepted a trusted proxy that is not an address")
	}
}
