package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/agent"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// withInit writes an init script into a fresh root and configures it.
func withInit(t *testing.T, script string, mode os.FileMode, mutate func(*agent.Config)) *harness {
	t.Helper()
	path := filepath.Join(t.TempDir(), "init.sh")
	if err := os.WriteFile(path, []byte(script), mode); err != nil {
		t.Fatal(err)
	}
	return startAgent(t, func(c *agent.Config) {
		c.InitScript = path
		if mutate != nil {
			mutate(c)
		}
	})
}

func waitInit(t *testing.T, c *agentapi.Client, runs int) *agentapi.InitStatus {
	t.Helper()
	var st *agentapi.InitStatus
	testwait.True(t, 20*time.Second, "init run to finish", func() bool {
		var err error
		st, err = c.InitStatus(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st.Runs == runs && (st.State == agentapi.InitSucceeded || st.State == agentapi.InitFailed)
	})
	return st
}

func initLog(t *testing.T, c *agentapi.Client) string {
	t.Helper()
	l, err := c.InitLog(testwait.Context(t, 10*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	if l.Size != int64(len(l.Data)) {
		t.Errorf("X-Log-Size %d for %d bytes", l.Size, len(l.Data))
	}
	return string(l.Data)
}

func TestInitScriptSuccess(t *testing.T) {
	h := withInit(t, "echo hello from init\necho to stderr >&2\npwd\necho \"ws=$SORTIE_WORKSPACE\"\n", 0o644, nil)
	st := waitInit(t, h.client, 1)
	if st.State != agentapi.InitSucceeded || st.ExitCode == nil || *st.ExitCode != 0 || st.StartedAt == nil || st.FinishedAt == nil {
		t.Fatalf("status %+v", st)
	}
	r, err := h.client.Ready(testwait.Context(t, 5*time.Second))
	if err != nil || r.Status != "ready" {
		t.Fatalf("Ready = %+v, %v", r, err)
	}
	log := initLog(t, h.client)
	for _, want := range []string{"=== sortie init run 1 started", "hello from init\n", "to stderr\n", h.cfg.Workdir + "\n", "ws=1\n", "exit code 0"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	// Reading from an offset returns the tail; past the end is 416.
	tail, err := h.client.InitLog(testwait.Context(t, 5*time.Second), int64(len(log)-5))
	if err != nil || string(tail.Data) != log[len(log)-5:] {
		t.Errorf("tail %q, %v", tail.Data, err)
	}
	if _, err := h.client.InitLog(testwait.Context(t, 5*time.Second), int64(len(log)+1)); errCode(err) != "offset_out_of_range" {
		t.Errorf("past the end: %v", err)
	}
}

func TestInitScriptFailureAndRerun(t *testing.T) {
	h := withInit(t, "echo about to fail\necho bad thing >&2\nexit 7\n", 0o644, nil)
	st := waitInit(t, h.client, 1)
	if st.State != agentapi.InitFailed || st.ExitCode == nil || *st.ExitCode != 7 {
		t.Fatalf("status %+v, want failed with 7", st)
	}
	r, err := h.client.Ready(testwait.Context(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&agentapi.Readiness{Status: "failed", ExitCode: st.ExitCode}, r); diff != "" {
		t.Errorf("Ready (-want +got):\n%s", diff)
	}
	log := initLog(t, h.client)
	if !strings.Contains(log, "about to fail\nbad thing\n") || !strings.Contains(log, "exit code 7") {
		t.Errorf("log:\n%s", log)
	}

	// Fix the script through the file API (it lives outside the roots
	// here, so write it directly), then rerun.
	if err := os.WriteFile(h.cfg.InitScript, []byte("echo fixed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st2, err := h.client.RerunInit(testwait.Context(t, 5*time.Second))
	if err != nil {
		t.Fatalf("RerunInit: %v", err)
	}
	if st2.Runs != 2 {
		t.Errorf("rerun status %+v", st2)
	}
	st = waitInit(t, h.client, 2)
	if st.State != agentapi.InitSucceeded {
		t.Fatalf("after rerun: %+v", st)
	}
	if r, _ := h.client.Ready(testwait.Context(t, 5*time.Second)); r.Status != "ready" {
		t.Errorf("Ready after rerun: %+v", r)
	}
	log2 := initLog(t, h.client)
	if !strings.HasPrefix(log2, log) || !strings.Contains(log2[len(log):], "=== sortie init run 2 started") || !strings.Contains(log2, "fixed\n") {
		t.Errorf("log is not appended per run:\n%s", log2)
	}
}

func TestInitScriptRerunWhileRunning(t *testing.T) {
	gate := filepath.Join(t.TempDir(), "go")
	h := withInit(t, "while [ ! -e '"+gate+"' ]; do sleep 0.05; done\n", 0o644, nil)
	ctx := testwait.Context(t, 10*time.Second)
	testwait.True(t, 5*time.Second, "running", func() bool {
		st, err := h.client.InitStatus(ctx)
		return err == nil && st.State == agentapi.InitRunning
	})
	if r, _ := h.client.Ready(ctx); r.Status != "initializing" {
		t.Errorf("Ready while running: %+v", r)
	}
	if _, err := h.client.RerunInit(ctx); errCode(err) != "conflict" {
		t.Errorf("rerun while running: %v, want conflict", err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if st := waitInit(t, h.client, 1); st.State != agentapi.InitSucceeded {
		t.Errorf("status %+v", st)
	}
}

func TestInitScriptVariants(t *testing.T) {
	tests := map[string]struct {
		script    string
		mode      os.FileMode
		mutate    func(*agent.Config)
		wantState string
		wantExit  int
		wantLog   string
	}{
		"shebang is honoured when executable": {
			script: "#!/bin/bash\necho \"bash=${BASH_VERSION:+yes}\"\n", mode: 0o755,
			wantState: agentapi.InitSucceeded, wantLog: "bash=yes\n",
		},
		"not executable runs with sh": {
			script: "#!/bin/bash\necho \"bash=${BASH_VERSION:+yes}\"\n", mode: 0o644,
			wantState: agentapi.InitSucceeded, wantLog: "bash=\n",
		},
		"timeout": {
			script: "echo slow\nsleep 100\n", mode: 0o644,
			mutate:    func(c *agent.Config) { c.InitTimeout = 300 * time.Millisecond },
			wantState: agentapi.InitFailed, wantExit: 124, wantLog: "timed out",
		},
		"killed by a signal": {
			script: "kill -TERM $$\n", mode: 0o644,
			wantState: agentapi.InitFailed, wantExit: 143,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := withInit(t, tc.script, tc.mode, tc.mutate)
			st := waitInit(t, h.client, 1)
			if st.State != tc.wantState || *st.ExitCode != tc.wantExit {
				t.Errorf("status %s/%d, want %s/%d", st.State, *st.ExitCode, tc.wantState, tc.wantExit)
			}
			if log := initLog(t, h.client); !strings.Contains(log, tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, log)
			}
		})
	}
}

func TestNoInitScript(t *testing.T) {
	for name, script := range map[string]string{"unset": "", "missing file": "/nonexistent/init.sh"} {
		t.Run(name, func(t *testing.T) {
			h := startAgent(t, func(c *agent.Config) { c.InitScript = script })
			ctx := testwait.Context(t, 5*time.Second)
			st, err := h.client.InitStatus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(&agentapi.InitStatus{State: agentapi.InitSucceeded}, st); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			if r, _ := h.client.Ready(ctx); r.Status != "ready" {
				t.Errorf("Ready: %+v", r)
			}
			if l, err := h.client.InitLog(ctx, 0); err != nil || l.Size != 0 {
				t.Errorf("InitLog = %+v, %v", l, err)
			}
		})
	}
}
