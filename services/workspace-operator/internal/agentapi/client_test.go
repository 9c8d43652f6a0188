package agentapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// hostile serves h as an agent would be served by a workload that took
// its place.
func hostile(t *testing.T, h http.HandlerFunc) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return NewClient(srv.URL, "tok", nil)
}

// A redirect is never followed, whatever the HTTP client given says: the
// place it points to gets no request (and no token), and the call fails
// with CodeRedirect.
func TestClientRefusesRedirects(t *testing.T) {
	var reached atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		w.Write([]byte(`{"status":"ok"}`))
	}))
	defer elsewhere.Close()
	for _, status := range []int{301, 302, 303, 307, 308} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, elsewhere.URL+r.URL.Path, status)
			}))
			defer srv.Close()
			// A client that would follow them.
			c := NewClient(srv.URL, "tok", &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return nil }})
			calls := map[string]func() error{
				"health": func() error { return c.Health(context.Background()) },
				"exec": func() error {
					_, err := c.ExecStream(context.Background(), ExecRequest{Command: "true"}, 1<<20)
					return err
				},
				"init log": func() error { _, err := c.InitLog(context.Background(), 0); return err },
				"signal":   func() error { return c.Signal(context.Background(), "p", "TERM") },
			}
			for name, call := range calls {
				if err := call(); ErrorCode(err) != CodeRedirect {
					t.Errorf("%s: %v, want a %s error", name, err, CodeRedirect)
				}
			}
			if n := reached.Load(); n != 0 {
				t.Errorf("the redirect's target got %d requests", n)
			}
		})
	}
}

// An error answer's body is read a little, kept for the log, and becomes
// a message only when it is the agent's JSON shape, cleaned.
func TestClientErrorsAreNotReflected(t *testing.T) {
	tests := map[string]struct {
		status      int
		body        string
		wantCode    string
		wantMessage string
	}{
		"agent error": {status: 404, body: `{"error":"process not found: p1","code":"not_found"}`,
			wantCode: "not_found", wantMessage: "process not found: p1"},
		"html page":  {status: 502, body: "<html><script>alert(1)</script></html>", wantCode: "http_502"},
		"plain text": {status: 400, body: "you have been hacked, visit evil.example", wantCode: "http_400"},
		"control characters": {status: 409, body: `{"error":"busy\u001b[2J\r\nFAKE LOG LINE\u202e","code":"conflict"}`,
			wantCode: "conflict", wantMessage: "busy [2J  FAKE LOG LINE "},
		"huge message": {status: 400, body: `{"error":"` + strings.Repeat("é", 2000) + `","code":"bad_request"}`,
			wantCode: "bad_request", wantMessage: strings.Repeat("é", 126) + "…"},
		"huge body": {status: 500, body: strings.Repeat("x", 10<<20), wantCode: "http_500"},
		"code with junk": {status: 400, body: `{"error":"x","code":"bad\nrequest"}`,
			wantCode: "bad request", wantMessage: "x"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := hostile(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			})
			_, err := c.GetProcess(context.Background(), "p1")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err = %v, want an *Error", err)
			}
			if e.Code != tc.wantCode || e.Message != tc.wantMessage || len(e.Detail) > maxDetail {
				t.Errorf("got code %q message %q (detail %d bytes), want %q %q", e.Code, e.Message, len(e.Detail), tc.wantCode, tc.wantMessage)
			}
		})
	}
}

// Every answer is read up to its cap and no further.
func TestClientCapsAnswers(t *testing.T) {
	huge := func(prefix string, n int, suffix string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if r.Method == http.MethodPost && r.URL.Path == "/v1/processes" {
				w.WriteHeader(http.StatusCreated)
			}
			io.WriteString(w, prefix)
			chunk := strings.Repeat("a", 64<<10)
			for i := 0; i < n; i += len(chunk) {
				if _, err := io.WriteString(w, chunk); err != nil {
					return
				}
			}
			io.WriteString(w, suffix)
		}
	}
	tests := map[string]struct {
		serve http.HandlerFunc
		call  func(*Client) error
	}{
		"stats":       {huge(`{"source":"`, MaxSmallAnswer, `"}`), func(c *Client) error { _, err := c.Stats(context.Background()); return err }},
		"init status": {huge(`{"state":"`, MaxSmallAnswer, `"}`), func(c *Client) error { _, err := c.InitStatus(context.Background()); return err }},
		"process":     {huge(`{"id":"`, MaxProcessAnswer, `"}`), func(c *Client) error { _, err := c.GetProcess(context.Background(), "p"); return err }},
		"start": {huge(`{"id":"`, MaxProcessAnswer, `"}`), func(c *Client) error {
			_, err := c.StartProcess(context.Background(), StartProcessRequest{Command: "true"})
			return err
		}},
		"process list": {huge(`{"processes":[{"id":"`, MaxProcessList, `"}]}`), func(c *Client) error { _, err := c.ListProcesses(context.Background()); return err }},
		"exec as JSON": {huge(`{"stdout":"`, MaxExecJSON, `"}`), func(c *Client) error {
			_, err := c.ExecStream(context.Background(), ExecRequest{Command: "true"}, 1<<20)
			return err
		}},
		"exec head": {func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ExecStreamType)
			io.WriteString(w, `{"exit_code":0,"signal":"`+strings.Repeat("K", MaxExecHead)+`"}`+"\n")
		}, func(c *Client) error {
			_, err := c.ExecStream(context.Background(), ExecRequest{Command: "true"}, 1<<20)
			return err
		}},
		"output event": {func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"offset":0,"data":"`+strings.Repeat("a", MaxOutputEventLine)+`"}`+"\n")
		}, func(c *Client) error {
			for _, err := range c.FollowOutput(context.Background(), "p", OutputQuery{}) {
				return err
			}
			return nil
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if err := tc.call(hostile(t, tc.serve)); !errors.Is(err, ErrTooLarge) {
				t.Errorf("err = %v, want ErrTooLarge", err)
			}
		})
	}
}

// The operator's own cap holds whatever the agent's head says, and a
// body that ends early is an error, not a silent cut.
func TestExecStreamCapsAndChecks(t *testing.T) {
	serve := func(head, body string) *Client {
		return NewClient(httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Accept") != ExecStreamType {
				t.Errorf("Accept %q", r.Header.Get("Accept"))
			}
			w.Header().Set("Content-Type", ExecStreamType)
			io.WriteString(w, head+"\n"+body)
		})).URL, "tok", nil)
	}
	read := func(o *ExecOutput) (string, string, error) {
		out, err1 := io.ReadAll(o.Stdout())
		errs, err2 := io.ReadAll(o.Stderr())
		return string(out), string(errs), errors.Join(err1, err2)
	}
	t.Run("within the cap", func(t *testing.T) {
		o, err := serve(`{"exit_code":2,"stdout_bytes":3,"stderr_bytes":2}`, "outer").ExecStream(context.Background(), ExecRequest{}, 10)
		if err != nil {
			t.Fatal(err)
		}
		if out, errs, err := read(o); out != "out" || errs != "er" || err != nil || o.Head.ExitCode != 2 || o.Head.StdoutTruncated {
			t.Errorf("%q %q %v %+v", out, errs, err, o.Head)
		}
	})
	t.Run("over the cap", func(t *testing.T) {
		o, err := serve(`{"stdout_bytes":10,"stderr_bytes":4}`, "0123456789abcd").ExecStream(context.Background(), ExecRequest{}, 4)
		if err != nil {
			t.Fatal(err)
		}
		out, errs, err := read(o)
		if out != "0123"+TruncationMarker(4) || errs != "abcd" || err != nil || !o.Head.StdoutTruncated || o.Head.StderrTruncated {
			t.Errorf("%q %q %v %+v", out, errs, err, o.Head)
		}
		if o.Head.StdoutBytes != int64(len(out)) {
			t.Errorf("head says %d bytes of stdout, %d read", o.Head.StdoutBytes, len(out))
		}
	})
	t.Run("stderr without reading stdout", func(t *testing.T) {
		o, err := serve(`{"stdout_bytes":10,"stderr_bytes":2}`, "0123456789ab").ExecStream(context.Background(), ExecRequest{}, 4)
		if err != nil {
			t.Fatal(err)
		}
		if errs, err := io.ReadAll(o.Stderr()); string(errs) != "ab" || err != nil {
			t.Errorf("%q %v", errs, err)
		}
	})
	t.Run("body ends early", func(t *testing.T) {
		o, err := serve(`{"stdout_bytes":10,"stderr_bytes":2}`, "0123").ExecStream(context.Background(), ExecRequest{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := read(o); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("err = %v, want io.ErrUnexpectedEOF", err)
		}
	})
	for name, head := range map[string]string{
		"negative length": `{"stdout_bytes":-1}`,
		"unknown field":   `{"stdout_bytes":1,"evil":true}`,
		"not json":        `<html>`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := serve(head, "x").ExecStream(context.Background(), ExecRequest{}, 100); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// A client made without an HTTP client of its own gets NewHTTPClient's
// bounds: an answer whose headers are larger than net/http's default
// would allow is still refused.
func TestClientDefaultBoundsHeaders(t *testing.T) {
	c := hostile(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Padding", strings.Repeat("p", 128<<10))
		w.Write([]byte(`{"status":"ok"}`))
	})
	if err := c.Health(context.Background()); err == nil {
		t.Fatal("an answer with 128 KiB of headers was accepted")
	}
}
