package agent_test

import (
	"context"
	"testing"

	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// BenchmarkExecTrue measures one POST /v1/exec of `true` through the client
// over loopback HTTP: auth, JSON, fork/exec of /bin/sh, pipes and wait. It is
// the figure to hold against client-go's pods/exec.
func BenchmarkExecTrue(b *testing.B) {
	h := startAgent(b, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := h.client.Exec(ctx, agentapi.ExecRequest{Command: "true"})
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("Exec = %+v, %v", res, err)
		}
	}
}
