package agent_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/agent"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

func TestExec(t *testing.T) {
	// The agent's own settings, the token above all, must not reach children.
	t.Setenv("SORTIE_AGENT_TOKEN", "leak-me")
	h := startAgent(t, nil)
	if err := os.MkdirAll(filepath.Join(h.cfg.Workdir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		req  agentapi.ExecRequest
		want agentapi.ExecResult
	}{
		"exit code":        {req: agentapi.ExecRequest{Command: "exit 3"}, want: agentapi.ExecResult{ExitCode: 3}},
		"stdout":           {req: agentapi.ExecRequest{Command: "echo hello"}, want: agentapi.ExecResult{Stdout: "hello\n"}},
		"stderr":           {req: agentapi.ExecRequest{Command: "echo oops >&2; exit 1"}, want: agentapi.ExecResult{ExitCode: 1, Stderr: "oops\n"}},
		"default cwd":      {req: agentapi.ExecRequest{Command: "pwd"}, want: agentapi.ExecResult{Stdout: h.cfg.Workdir + "\n"}},
		"relative cwd":     {req: agentapi.ExecRequest{Command: "pwd", Cwd: "sub"}, want: agentapi.ExecResult{Stdout: filepath.Join(h.cfg.Workdir, "sub") + "\n"}},
		"absolute cwd":     {req: agentapi.ExecRequest{Command: "pwd", Cwd: h.root}, want: agentapi.ExecResult{Stdout: h.root + "\n"}},
		"env":              {req: agentapi.ExecRequest{Command: `printf %s "$FOO"`, Env: map[string]string{"FOO": "bar baz"}}, want: agentapi.ExecResult{Stdout: "bar baz"}},
		"workspace env":    {req: agentapi.ExecRequest{Command: `printf %s "$SORTIE_WORKSPACE"`}, want: agentapi.ExecResult{Stdout: "1"}},
		"no agent token":   {req: agentapi.ExecRequest{Command: `printf %s "${SORTIE_AGENT_TOKEN-unset}"`}, want: agentapi.ExecResult{Stdout: "unset"}},
		"stdin":            {req: agentapi.ExecRequest{Command: "tr a-z A-Z", Stdin: "shout\n"}, want: agentapi.ExecResult{Stdout: "SHOUT\n"}},
		"unread stdin":     {req: agentapi.ExecRequest{Command: "true", Stdin: strings.Repeat("x", 200<<10)}, want: agentapi.ExecResult{}},
		"not found":        {req: agentapi.ExecRequest{Command: "no-such-command-xyz 2>/dev/null"}, want: agentapi.ExecResult{ExitCode: 127}},
		"killed":           {req: agentapi.ExecRequest{Command: "kill -KILL $$"}, want: agentapi.ExecResult{ExitCode: -1, Signal: "KILL"}},
		"explicit timeout": {req: agentapi.ExecRequest{Command: "echo ok", TimeoutSecs: 600}, want: agentapi.ExecResult{Stdout: "ok\n"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := h.client.Exec(testwait.Context(t, 30*time.Second), tc.req)
			if err != nil {
				t.Fatalf("Exec: %v", err)
			}
			if diff := cmp.Diff(tc.want, *got, cmpopts.IgnoreFields(agentapi.ExecResult{}, "DurationMS")); diff != "" {
				t.Errorf("Exec(%q) (-want +got):\n%s", tc.req.Command, diff)
			}
		})
	}
}

func TestExecRejects(t *testing.T) {
	h := startAgent(t, nil)
	tests := map[string]struct {
		req      agentapi.ExecRequest
		wantCode string
	}{
		"timeout above max": {req: agentapi.ExecRequest{Command: "true", TimeoutSecs: 601}, wantCode: "bad_request"},
		"negative timeout":  {req: agentapi.ExecRequest{Command: "true", TimeoutSecs: -1}, wantCode: "bad_request"},
		"missing cwd":       {req: agentapi.ExecRequest{Command: "true", Cwd: "does/not/exist"}, wantCode: "invalid_cwd"},
		"cwd is a file":     {req: agentapi.ExecRequest{Command: "true", Cwd: "/etc/hostname"}, wantCode: "invalid_cwd"},
		"empty command":     {req: agentapi.ExecRequest{}, wantCode: "bad_request"},
		"bad env name":      {req: agentapi.ExecRequest{Command: "true", Env: map[string]string{"A=B": "x"}}, wantCode: "bad_request"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := h.client.Exec(testwait.Context(t, 10*time.Second), tc.req)
			if got := errCode(err); got != tc.wantCode {
				t.Errorf("error code = %q (%v), want %q", got, err, tc.wantCode)
			}
		})
	}
}

// A child that fills stdout and stderr at once must not deadlock: both
// pipes are read concurrently from the start.
func TestExecLargeOutputOnBothStreams(t *testing.T) {
	const size = 10_000_000
	cmd := `head -c 10000000 /dev/zero | tr '\0' o & head -c 10000000 /dev/zero | tr '\0' e >&2; wait`
	tests := map[string]struct {
		maxOutput     int64
		wantLen       int
		wantTruncated bool
	}{
		"under the default cap": {maxOutput: 10 << 20, wantLen: size},
		"over a 1 MiB cap":      {maxOutput: 1 << 20, wantLen: 1<<20 + len(agentapi.TruncationMarker(1<<20)), wantTruncated: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := startAgent(t, func(c *agent.Config) { c.ExecMaxOutput = tc.maxOutput })
			got, err := h.client.Exec(testwait.Context(t, 60*time.Second), agentapi.ExecRequest{Command: cmd, TimeoutSecs: 60})
			if err != nil {
				t.Fatal(err)
			}
			if got.TimedOut || got.ExitCode != 0 {
				t.Fatalf("exit_code=%d timed_out=%v, want a clean exit", got.ExitCode, got.TimedOut)
			}
			if len(got.Stdout) != tc.wantLen || len(got.Stderr) != tc.wantLen {
				t.Errorf("len(stdout)=%d len(stderr)=%d, want %d each", len(got.Stdout), len(got.Stderr), tc.wantLen)
			}
			marker := ""
			if tc.wantTruncated {
				marker = agentapi.TruncationMarker(tc.maxOutput)
			}
			if strings.Trim(strings.TrimSuffix(got.Stdout, marker), "o") != "" || strings.Trim(strings.TrimSuffix(got.Stderr, marker), "e") != "" {
				t.Error("streams mixed up")
			}
			if got.StdoutTruncated != tc.wantTruncated || got.StderrTruncated != tc.wantTruncated {
				t.Errorf("truncated = %v/%v, want %v", got.StdoutTruncated, got.StderrTruncated, tc.wantTruncated)
			}
		})
	}
}

// On timeout the partial output is kept and the whole process group dies,
// grandchildren included.
func TestExecTimeoutKillsProcessGroup(t *testing.T) {
	h := startAgent(t, nil)
	start := time.Now()
	got, err := h.client.Exec(testwait.Context(t, 30*time.Second), agentapi.ExecRequest{
		Command:     `echo $$; echo partial >&2; sleep 1000 & sleep 1000`,
		TimeoutSecs: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !got.TimedOut || got.ExitCode != -1 {
		t.Errorf("timed_out=%v exit_code=%d, want true and -1", got.TimedOut, got.ExitCode)
	}
	if got.Stderr != "partial\n" {
		t.Errorf("stderr = %q, want the partial output", got.Stderr)
	}
	if elapsed := time.Since(start); elapsed > testwait.Scaled(10*time.Second) {
		t.Errorf("took %s; the response must not wait for the background sleep", elapsed)
	}
	pgid, err := strconv.Atoi(strings.TrimSpace(got.Stdout))
	if err != nil {
		t.Fatalf("stdout %q: %v", got.Stdout, err)
	}
	testwait.True(t, 5*time.Second, "no live process in the group", func() bool { return len(liveInGroup(t, pgid)) == 0 })
}

// A client that goes away kills its command too.
func TestExecClientGoneKillsCommand(t *testing.T) {
	h := startAgent(t, nil)
	marker := filepath.Join(h.root, "pgid")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := h.client.Exec(ctx, agentapi.ExecRequest{Command: `echo $$ > ` + marker + `; sleep 1000`})
		done <- err
	}()
	var pgid int
	testwait.True(t, 5*time.Second, "the command to start", func() bool {
		b, err := os.ReadFile(marker)
		pgid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pgid > 0
	})
	cancel()
	<-done
	testwait.True(t, 5*time.Second, "no live process in the group", func() bool { return len(liveInGroup(t, pgid)) == 0 })
}

// A background job that keeps the pipes open must not hold the answer
// until it ends.
func TestExecBackgroundJobDoesNotBlock(t *testing.T) {
	h := startAgent(t, nil)
	// The job outlives the bound on the answer twice over, however the
	// bound is scaled: an answer that waited for it would break the bound.
	bound := testwait.Scaled(15 * time.Second)
	job := fmt.Sprintf("echo $$; sleep %d & echo started", int(2*bound/time.Second))
	start := time.Now()
	got, err := h.client.Exec(testwait.Context(t, 30*time.Second), agentapi.ExecRequest{Command: job})
	if err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > bound {
		t.Errorf("took %s", elapsed)
	}
	lines := strings.Fields(got.Stdout)
	if len(lines) != 2 || lines[1] != "started" || got.ExitCode != 0 {
		t.Fatalf("got %+v", got)
	}
	pgid, _ := strconv.Atoi(lines[0])
	t.Cleanup(func() {
		for _, pid := range liveInGroup(t, pgid) {
			_ = syscallKill(pid)
		}
	})
}
