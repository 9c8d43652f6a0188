package rest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"strings"
	"testing"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// refusal checks err is a client error in the JSON error shape.
func refusal(t *testing.T, err error) {
	t.Helper()
	var e *apierror.Error
	if !errors.As(err, &e) || e.Status < 400 || e.Status >= 500 || e.Code == "" || e.Message == "" {
		t.Fatalf("refused with %v (%T), want a 4xx apierror", err, err)
	}
}

// envNames fails t for a variable name the agent would not take.
func envNames(t *testing.T, env map[string]string) {
	t.Helper()
	for k := range env {
		if !envName.MatchString(k) {
			t.Fatalf("accepted variable %q", k)
		}
	}
}

// fuzzQuery fuzzes parse, a reader of query parameters, from seeds: any
// query is refused with a 4xx, or what it gives is ok.
func fuzzQuery[Q any](f *testing.F, seeds []string, parse func(url.Values) (Q, error), ok func(Q) bool) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		q, err := parse(v)
		if err != nil {
			refusal(t, err)
			return
		}
		if !ok(q) {
			t.Fatalf("accepted %+v from %q", q, raw)
		}
	})
}

func bodyRequest(body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 1<<20) // kit's limit
	return r
}

// FuzzExecBody: any exec body is refused with a 4xx, or is a command the
// agent may run: a command, a timeout in range, valid variable names.
func FuzzExecBody(f *testing.F) {
	for _, s := range []string{
		`{"command":"echo hi","cwd":"sub","timeout_secs":5,"env":{"A":"b"},"stdin":"x"}`,
		`{"command":"  "}`, `{"command":"x","timeout_secs":601}`, `{"command":"x","timeout_secs":-1}`,
		`{"command":"x","env":{"A=B":"c"}}`, `{"command":"x","env":{"":"c"}}`, `{"command":1}`,
		`[]`, `{"command":"x"} {"command":"y"}`, `{"command":"x","timeout_secs":1e400}`, ``, `{`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req, err := parseExec(bodyRequest(body))
		if err != nil {
			refusal(t, err)
			return
		}
		if strings.TrimSpace(req.Command) == "" || len(req.Command) >= MaxArg || req.TimeoutSecs < 0 || req.TimeoutSecs > agentapi.MaxExecTimeoutSecs {
			t.Fatalf("accepted %+v", req)
		}
		envNames(t, req.Env)
	})
}

// FuzzStartProcessBody: any process start body is refused with a 4xx, or
// names something to run with valid variable names.
func FuzzStartProcessBody(f *testing.F) {
	for _, s := range []string{
		`{"id":"p1","command":"sleep 1"}`, `{"argv":["claude","-p","hi"],"cwd":"/workspace","env":{"X":"1"},"stdin":"{}"}`,
		`{"argv":[]}`, `{}`, `{"command":"x","argv":["y"]}`, `{"argv":[""]}`, `{"command":"x","env":{"1X":"y"}}`,
		`{"id":"../../etc","command":"x"}`, `{"argv":"notalist"}`, `null`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		req, err := parseStartProcess(bodyRequest(body))
		if err != nil {
			refusal(t, err)
			return
		}
		if req.Command == "" && len(req.Argv) == 0 || len(req.Command) >= MaxArg {
			t.Fatalf("accepted %+v", req)
		}
		for _, a := range req.Argv {
			if len(a) >= MaxArg {
				t.Fatalf("accepted an argument of %d bytes", len(a))
			}
		}
		envNames(t, req.Env)
	})
}

// FuzzOutputQuery: any query of a read of process output is a 400 or
// within bounds.
func FuzzOutputQuery(f *testing.F) {
	fuzzQuery(f, []string{"offset=0", "offset=10&follow=true&limit=100", "follow=1", "follow=yes", "offset=-1",
		"limit=0", "limit=67108865", "offset=9223372036854775808", "offset=%00", "limit=1&limit=2", "offset= 1"},
		parseOutputQuery, func(q agentapi.OutputQuery) bool {
			return q.Offset >= 0 && q.Limit >= 0 && q.Limit <= MaxOutputLimit
		})
}

// FuzzInitLogQuery: any init-log query is a 400 or within bounds.
func FuzzInitLogQuery(f *testing.F) {
	fuzzQuery(f, []string{"", "offset=0", "offset=100&limit=10", "limit=1048576", "limit=1048577", "limit=0",
		"offset=-5", "offset=1.5", "limit=abc", "offset=99999999999999999999"},
		parseInitLogQuery, func(q initLogQuery) bool {
			return q.offset >= 0 && q.limit >= 1 && q.limit <= agentapi.MaxInitLogPage && (q.paged || q.offset == 0)
		})
}

// FuzzHostConfinement: whatever cwd and process id a caller gives for a
// host workspace, the cwd stays inside its directory and the agent's
// process id keeps the workspace's prefix and stays one path segment.
func FuzzHostConfinement(f *testing.F) {
	for _, s := range []string{"", "sub", "/workspaces/mine/sub", "..", "../other", "/workspaces/mine/../other",
		"/workspaces/mineother", "/", "a/../../b", "./.", "/workspaces/mine/"} {
		f.Add(s, "p1")
	}
	f.Add("x", "..")
	f.Add("x", "a/b")
	f.Add("x", strings.Repeat("a", 65))
	root := "/workspaces/mine"
	tg := target{ws: &v1alpha1.Workspace{Spec: v1alpha1.WorkspaceSpec{Type: v1alpha1.TypeHost, Path: root}}}
	tg.ws.UID = "0123abcd-0000-4000-8000-000000000000"
	f.Fuzz(func(t *testing.T, cwd, id string) {
		if got, err := tg.cwd(cwd); err != nil {
			refusal(t, err)
		} else if got != root && !strings.HasPrefix(got, root+"/") || path.Clean(got) != got {
			t.Fatalf("cwd %q became %q, outside %s", cwd, got, root)
		}
		got, err := tg.newProcessID(id)
		if err != nil {
			refusal(t, err)
			return
		}
		if !strings.HasPrefix(got, tg.prefix()) || strings.ContainsAny(got, "/\\\x00") || got == "." || got == ".." || len(got) > 100 {
			t.Fatalf("process id %q became %q", id, got)
		}
	})
}
