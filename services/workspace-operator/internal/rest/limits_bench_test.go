package rest

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// BenchmarkExecLargeOutput: POST /exec of a command writing 10 MiB, from
// the REST server through a real agent process, the answer read and
// dropped by the client. B/op is what this process (the operator)
// allocated per exec; the agent's memory is its own process's.
// "decoded whole" is the path before streaming: the agent's JSON answer
// decoded, then encoded again for the caller.
func BenchmarkExecLargeOutput(b *testing.B) {
	e, port := startAgentREST(b, nil)
	ws := readyAgentWorkspace(b, e, port, "bench-exec", nil)
	for name, cmd := range map[string]string{
		"text":          "head -c 10485760 /dev/zero | tr '\\0' y",
		"control bytes": "head -c 10485760 /dev/zero",
	} {
		b.Run(name+"/streamed", func(b *testing.B) {
			b.ReportAllocs()
			var n int64
			for b.Loop() {
				n = discard(b, e.raw("POST", "/api/workspaces/"+ws.id+"/exec", map[string]any{"command": cmd}))
			}
			b.ReportMetric(float64(n), "answer-bytes")
		})
		b.Run(name+"/decoded whole", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := ws.agent.Exec(context.Background(), agentapi.ExecRequest{Command: cmd})
				if err != nil {
					b.Skipf("the agent's whole JSON answer is over the cap: %v", err)
				}
				if _, err := json.Marshal(ExecResponse{Stdout: res.Stdout, Stderr: res.Stderr}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkInitLogLarge: GET /init-log of a 50 MiB log (the default page:
// its last 500 lines), and a walk through all of it a page at a time.
func BenchmarkInitLogLarge(b *testing.B) {
	e, port := startAgentREST(b, nil)
	ws := readyAgentWorkspace(b, e, port, "bench-init-log", nil)
	for name, log := range map[string][]byte{
		"lines":    bytes.Repeat([]byte("0123456789abcde\n"), 50<<20/16),
		"one line": bytes.Repeat([]byte("x"), 50<<20),
	} {
		writeInitLog(b, ws, log, 0)
		b.Run(name+"/default page", func(b *testing.B) {
			b.ReportAllocs()
			var n int64
			for b.Loop() {
				n = discard(b, e.raw("GET", "/api/workspaces/"+ws.id+"/init-log", nil))
			}
			b.ReportMetric(float64(n), "answer-bytes")
		})
	}
}
