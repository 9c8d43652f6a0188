package rest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// hostileAgent serves h at 127.0.0.2:port, where a workspace's Pod is said
// to be: an agent replaced by the workload it runs.
func hostileAgent(t *testing.T, port int, h http.HandlerFunc) {
	t.Helper()
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.2:%d", port))
	if err != nil {
		t.Skipf("cannot listen on 127.0.0.2: %v", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// An agent cannot steer the operator: its redirects are not followed (the
// place they point to gets nothing), its error bodies never reach the
// caller (only a known code with a cleaned, bounded message does), and
// what it sends is capped. Nothing about the workspace changes.
func TestHostileAgent(t *testing.T) {
	e, port := startAgentREST(t, func(h *Handler) { h.ExecMaxOutput = 1 << 20 })
	var reached atomic.Int32
	elsewhere := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":"p1","running":true}`)
	})}
	eln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = elsewhere.Serve(eln) }()
	t.Cleanup(func() { _ = elsewhere.Close() })

	var mode atomic.Value
	hostileAgent(t, port, func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load().(string) {
		case "redirect":
			http.Redirect(w, r, "http://"+eln.Addr().String()+r.URL.Path, http.StatusTemporaryRedirect)
		case "html 500":
			w.WriteHeader(500)
			io.WriteString(w, "<html><body>internal: token=s3cret</body></html>")
		case "text 400":
			w.WriteHeader(400)
			io.WriteString(w, "Your session expired. Log in again at http://evil.example")
		case "escapes in a refusal":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(400)
			io.WriteString(w, `{"error":"bad cwd\u001b[2J\r\nadmin: password reset at http://evil.example `+strings.Repeat("A", 1000)+`","code":"invalid_cwd"}`)
		case "unknown code":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(418)
			io.WriteString(w, `{"error":"I am a teapot","code":"teapot"}`)
		case "401":
			w.WriteHeader(401)
			io.WriteString(w, `{"error":"token mismatch","code":"unauthorized"}`)
		case "huge exec":
			w.Header().Set("Content-Type", agentapi.ExecStreamType)
			io.WriteString(w, `{"exit_code":0,"stdout_bytes":1073741824,"stderr_bytes":0}`+"\n")
			chunk := strings.Repeat("z", 64<<10)
			for range 1 << 14 {
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
			}
		case "huge process":
			w.WriteHeader(201)
			io.WriteString(w, `{"id":"`)
			chunk := strings.Repeat("z", 64<<10)
			for range 1 << 10 {
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
			}
		}
	})
	id, name := readyWorkspaceAt(t, e, "hostile", "127.0.0.2", "tok")
	before := objectOf(t, e, id)

	type hostileCase struct {
		path   string
		status int
		code   string
		// message must be the answer's message, or contain it (…).
		message string
	}
	// failed is the operator's own 502 for an answer it does not pass on.
	failed := func(path, message string) hostileCase {
		return hostileCase{path: path, status: 502, code: CodeAgentUnavailable, message: message}
	}
	tests := map[string]hostileCase{
		"redirect":             failed("/processes", "the workspace agent failed (307 redirect)"),
		"html 500":             failed("/exec", "the workspace agent failed (500 http_500)"),
		"text 400":             failed("/exec", "the workspace agent failed (400 http_400)"),
		"escapes in a refusal": {path: "/exec", status: 400, code: "invalid_cwd", message: "bad cwd [2J  admin: password reset at http://evil.example AAAA…"},
		"unknown code":         failed("/exec", "the workspace agent failed (418 teapot)"),
		"401":                  failed("/exec", "the workspace agent failed (401 unauthorized)"),
		"huge process":         failed("/processes", "the workspace agent's answer was larger than the operator accepts"),
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			mode.Store(name)
			var got struct{ Error, Code string }
			st := e.rawJSON("POST", "/api/workspaces/"+id+tc.path, jsonBody(`{"command":"true"}`), &got)
			msgOK := got.Error == tc.message || (strings.HasSuffix(tc.message, "…") && strings.HasPrefix(got.Error, strings.TrimSuffix(tc.message, "AAAA…")))
			if st != tc.status || got.Code != tc.code || !msgOK {
				t.Errorf("%d %s %q, want %d %s %q", st, got.Code, got.Error, tc.status, tc.code, tc.message)
			}
			if len(got.Error) > 300 || strings.ContainsAny(got.Error, "\x1b\r\n") || strings.Contains(got.Error, "s3cret") {
				t.Errorf("the agent's words reached the caller: %q", got.Error)
			}
		})
	}
	if n := reached.Load(); n != 0 {
		t.Errorf("the redirect's target got %d requests", n)
	}

	t.Run("huge exec", func(t *testing.T) {
		mode.Store("huge exec")
		var got ExecResponse
		if st := e.rawJSON("POST", "/api/workspaces/"+id+"/exec", jsonBody(`{"command":"true"}`), &got); st != 200 {
			t.Fatalf("status %d", st)
		}
		if !got.StdoutTruncated || len(got.Stdout) != 1<<20+len(agentapi.TruncationMarker(1<<20)) {
			t.Errorf("%d bytes of stdout (truncated %v), want the operator's cap of 1 MiB and the marker", len(got.Stdout), got.StdoutTruncated)
		}
	})

	after := objectOf(t, e, id)
	if after.Name != name || after.ResourceVersion != before.ResourceVersion || after.Status.Phase != v1alpha1.PhaseReady {
		t.Errorf("the workspace changed: %s → %s", before.ResourceVersion, after.ResourceVersion)
	}
}

// jsonBody is a JSON text sent as it is.
type jsonBody string

func (j jsonBody) MarshalJSON() ([]byte, error) { return []byte(j), nil }
