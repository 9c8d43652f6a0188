package agent_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

func TestAuthAndRouting(t *testing.T) {
	h := startAgent(t, nil)
	tests := map[string]struct {
		method, path, auth string
		body               string
		wantStatus         int
		wantCode           string // for errors
	}{
		"healthz open":            {method: "GET", path: "/healthz", wantStatus: 200},
		"readyz open":             {method: "GET", path: "/readyz", wantStatus: 200},
		"no token":                {method: "GET", path: "/v1/init", wantStatus: 401, wantCode: "unauthorized"},
		"wrong token":             {method: "GET", path: "/v1/init", auth: "Bearer nope", wantStatus: 401, wantCode: "unauthorized"},
		"token prefix":            {method: "GET", path: "/v1/init", auth: "Bearer " + testToken[:5], wantStatus: 401, wantCode: "unauthorized"},
		"wrong scheme":            {method: "GET", path: "/v1/init", auth: "Basic " + testToken, wantStatus: 401, wantCode: "unauthorized"},
		"no token, exec":          {method: "POST", path: "/v1/exec", body: `{"command":"true"}`, wantStatus: 401, wantCode: "unauthorized"},
		"no token, unknown route": {method: "GET", path: "/nope", wantStatus: 401, wantCode: "unauthorized"},
		"right token":             {method: "GET", path: "/v1/init", auth: "Bearer " + testToken, wantStatus: 200},
		"scheme any case":         {method: "GET", path: "/v1/init", auth: "bearer " + testToken, wantStatus: 200},
		"unknown route":           {method: "GET", path: "/v1/nope", auth: "Bearer " + testToken, wantStatus: 404, wantCode: "not_found"},
		"wrong method":            {method: "DELETE", path: "/v1/exec", auth: "Bearer " + testToken, wantStatus: 405, wantCode: "method_not_allowed"},
		"invalid json":            {method: "POST", path: "/v1/exec", auth: "Bearer " + testToken, body: `{"command":`, wantStatus: 400, wantCode: "invalid_json"},
		"trailing json":           {method: "POST", path: "/v1/exec", auth: "Bearer " + testToken, body: `{"command":"true"} {}`, wantStatus: 400, wantCode: "invalid_json"},
		"json too large": {method: "POST", path: "/v1/exec", auth: "Bearer " + testToken,
			body: `{"command":"` + strings.Repeat("x", 1<<20) + `"}`, wantStatus: 413, wantCode: "body_too_large"},
		"bad offset": {method: "GET", path: "/v1/init/log?offset=-1", auth: "Bearer " + testToken, wantStatus: 400, wantCode: "bad_request"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, h.url+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tc.wantStatus, b)
			}
			if tc.wantCode == "" {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			var e agentapi.ErrorBody
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("error body %q: %v", b, err)
			}
			if e.Code != tc.wantCode || e.Error == "" {
				t.Errorf("error = %+v, want code %q and a message", e, tc.wantCode)
			}
		})
	}
}

func TestHealthAndReadyBodies(t *testing.T) {
	h := startAgent(t, nil)
	ctx := testwait.Context(t, 10*time.Second)
	if err := h.client.Health(ctx); err != nil {
		t.Fatalf("Health: %v", err)
	}
	testwait.True(t, 5*time.Second, "ready", func() bool {
		r, err := h.client.Ready(ctx)
		return err == nil && r.Status == "ready"
	})
	// The client's Ready carries the token; the probe must not need one.
	r, err := agentapi.NewClient(h.url, "", nil).Ready(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&agentapi.Readiness{Status: "ready"}, r); diff != "" {
		t.Errorf("Ready (-want +got):\n%s", diff)
	}
}
