package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

func TestMain(m *testing.M) {
	// Re-executed by the tests below to be the real agent process.
	if os.Getenv("WORKSPACE_AGENT_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestRunRefusesWithoutToken(t *testing.T) {
	err := run(func(string) (string, bool) { return "", false })
	if err == nil || !strings.Contains(err.Error(), "no token") {
		t.Errorf("run without a token: %v, want a no-token error", err)
	}
}

// syncBuffer collects the agent's log for failure messages.
type syncBuffer struct {
	mu sync.Mutex
	sb strings.Builder
}

func (b *syncBuffer) WriteString(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sb.WriteString(s)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sb.String()
}

type agentProc struct {
	cmd    *exec.Cmd
	client *agentapi.Client
	log    *syncBuffer
	exited chan error
	state  string
}

// startAgentProcess runs the agent binary (this test binary re-executed)
// as a subreaper on a loopback port.
func startAgentProcess(t *testing.T) *agentProc {
	t.Helper()
	root := t.TempDir()
	work, state := filepath.Join(root, "work"), filepath.Join(root, "work", ".sortie")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("main-test-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	initScript := filepath.Join(root, "init.sh")
	if err := os.WriteFile(initScript, []byte("echo init ran\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(),
		"WORKSPACE_AGENT_TEST_MAIN=1",
		"SORTIE_AGENT_ADDR=127.0.0.1:0",
		"SORTIE_AGENT_TOKEN_FILE="+tokenFile,
		"SORTIE_AGENT_WORKDIR="+work,
		"SORTIE_AGENT_STATE_DIR="+state,
		"SORTIE_AGENT_ROOTS="+root,
		"SORTIE_AGENT_INIT_SCRIPT="+initScript,
		"SORTIE_AGENT_GRACE=1s",
		"SORTIE_AGENT_SUBREAPER=true",
		"SORTIE_AGENT_LOG_LEVEL=debug",
	)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &agentProc{cmd: cmd, log: &syncBuffer{}, exited: make(chan error, 1), state: state}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.log.WriteString(line + "\n")
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "workspace-agent serving" {
				addr <- rec.Addr
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("agent log:\n%s", p.log.String())
		}
	})
	select {
	case a := <-addr:
		p.client = agentapi.NewClient("http://"+a, "main-test-token", nil)
	case <-testwait.After(20 * time.Second):
		t.Fatalf("agent did not start; log:\n%s", p.log.String())
	}
	return p
}

func TestAgentProcess(t *testing.T) {
	p := startAgentProcess(t)
	ctx := testwait.Context(t, 60*time.Second)
	testwait.True(t, 10*time.Second, "ready", func() bool {
		r, err := p.client.Ready(ctx)
		return err == nil && r.Status == "ready"
	})

	t.Run("reaps orphans without stealing exit codes", func(t *testing.T) {
		agentPID := p.cmd.Process.Pid
		for range 5 {
			res, err := p.client.Exec(ctx, agentapi.ExecRequest{Command: "sleep 0.3 >/dev/null 2>&1 & sleep 0.3 >/dev/null 2>&1 & exit 5"})
			if err != nil || res.ExitCode != 5 {
				t.Fatalf("Exec = %+v, %v; want exit code 5", res, err)
			}
		}
		if n := len(childrenOf(t, agentPID, false)); n < 2 {
			t.Errorf("%d orphans adopted by the agent, want the background sleeps", n)
		}
		testwait.True(t, 10*time.Second, "orphans reaped", func() bool {
			return len(childrenOf(t, agentPID, false)) == 0 && len(childrenOf(t, agentPID, true)) == 0
		})
	})

	for _, req := range []agentapi.StartProcessRequest{
		{ID: "polite", Command: `trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.05; done`},
		{ID: "stubborn", Command: `trap '' TERM; echo up; while :; do sleep 0.05; done`},
	} {
		if _, err := p.client.StartProcess(ctx, req); err != nil {
			t.Fatal(err)
		}
		testwait.True(t, 5*time.Second, req.ID+" up", func() bool {
			pr, err := p.client.GetProcess(ctx, req.ID)
			return err == nil && pr.OutputBytes > 0
		})
	}
	polite, _ := p.client.GetProcess(ctx, "polite")
	stubborn, _ := p.client.GetProcess(ctx, "stubborn")

	// SIGTERM: TERM to every group, SIGKILL after the 1s grace, exit 0.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		if err != nil {
			t.Fatalf("agent exit: %v, want status 0", err)
		}
	case <-testwait.After(20 * time.Second):
		t.Fatal("agent did not exit after SIGTERM")
	}
	for _, pr := range []*agentapi.Process{polite, stubborn} {
		if live := liveInGroup(t, pr.PID); len(live) != 0 {
			t.Errorf("group of %s still has %v", pr.ID, live)
		}
	}
	want := map[string]agentapi.Process{
		"polite":   {ID: "polite", ExitCode: intp(0)},
		"stubborn": {ID: "stubborn", Signal: strp("KILL")},
	}
	for id, w := range want {
		b, err := os.ReadFile(filepath.Join(p.state, "procs", id, "meta.json"))
		if err != nil {
			t.Fatal(err)
		}
		var got agentapi.Process
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(w, got, cmpopts.IgnoreFields(agentapi.Process{}, "PID", "Command", "Argv", "Cwd", "StartedAt", "FinishedAt")); diff != "" {
			t.Errorf("%s recorded end (-want +got):\n%s", id, diff)
		}
	}
	// The shell may also report its sleep's "Terminated" in between.
	if out, _ := os.ReadFile(filepath.Join(p.state, "procs", "polite", "output")); !strings.HasPrefix(string(out), "up\n") || !strings.HasSuffix(string(out), "bye\n") {
		t.Errorf("polite output %q, want up ... bye", out)
	}
}

func intp(i int) *int       { return &i }
func strp(s string) *string { return &s }

// procStat returns state, ppid and pgrp of every process.
func procStat(t *testing.T) map[int][3]string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][3]string{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) >= 3 {
			out[pid] = [3]string{f[0], f[1], f[2]}
		}
	}
	return out
}

// childrenOf lists the children of ppid: zombies, or the living.
func childrenOf(t *testing.T, ppid int, zombies bool) []int {
	var out []int
	for pid, st := range procStat(t) {
		if st[1] == strconv.Itoa(ppid) && (st[0] == "Z") == zombies {
			out = append(out, pid)
		}
	}
	return out
}

func liveInGroup(t *testing.T, pgid int) []int {
	var out []int
	for pid, st := range procStat(t) {
		if st[2] == strconv.Itoa(pgid) && st[0] != "Z" {
			out = append(out, pid)
		}
	}
	return out
}

func TestInstallCopiesTheBinary(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "workspace-agent")
	if err := install(dest); err != nil {
		t.Fatal(err)
	}
	self, _ := os.Executable()
	want, _ := os.ReadFile(self)
	got, err := os.ReadFile(dest)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("installed copy differs from the running binary (%v)", err)
	}
	if info, _ := os.Stat(dest); info.Mode().Perm() != 0o755 {
		t.Errorf("mode = %v, want 0755", info.Mode().Perm())
	}
}
