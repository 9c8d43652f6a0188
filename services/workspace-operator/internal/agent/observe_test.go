package agent

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"

	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// A panic in a handler becomes a JSON 500 and the server keeps serving.
func TestPanicBecomes500(t *testing.T) {
	a := &Agent{log: slog.New(slog.DiscardHandler)}
	h := a.observe(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	for range 2 {
		resp, err := http.Get("http://" + ln.Addr().String() + "/x")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e agentapi.ErrorBody
		if resp.StatusCode != 500 || json.Unmarshal(b, &e) != nil || e.Code != "internal" {
			t.Errorf("got %d %s, want a JSON 500", resp.StatusCode, b)
		}
	}
}
