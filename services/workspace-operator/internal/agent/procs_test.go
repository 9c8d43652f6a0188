package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// waitExited polls until the process has ended and returns it.
func waitExited(t *testing.T, c *agentapi.Client, id string) *agentapi.Process {
	t.Helper()
	var p *agentapi.Process
	testwait.True(t, 20*time.Second, "process "+id+" to exit", func() bool {
		var err error
		p, err = c.GetProcess(context.Background(), id)
		if err != nil {
			t.Fatalf("GetProcess: %v", err)
		}
		return !p.Running
	})
	return p
}

func intp(i int) *int       { return &i }
func strp(s string) *string { return &s }
func ignoreTimes() cmp.Option {
	return cmpopts.IgnoreFields(agentapi.Process{}, "PID", "StartedAt", "FinishedAt")
}

// A follower that disconnects mid-stream does not affect the process, and a
// new follower resumes exactly where the first stopped.
func TestProcessFollowResume(t *testing.T) {
	h := startAgent(t, nil)
	ctx := testwait.Context(t, 60*time.Second)
	const lines = 150
	p, err := h.client.StartProcess(ctx, agentapi.StartProcessRequest{
		ID:      "cli-run.1",
		Command: fmt.Sprintf(`i=1; while [ $i -le %d ]; do echo "line $i"; i=$((i+1)); sleep 0.01; done; exit 4`, lines),
	})
	if err != nil {
		t.Fatalf("StartProcess: %v", err)
	}
	if p.ID != "cli-run.1" || !p.Running || p.PID <= 0 {
		t.Fatalf("started %+v", p)
	}
	var want bytes.Buffer
	for i := 1; i <= lines; i++ {
		fmt.Fprintf(&want, "line %d\n", i)
	}

	// First follower: read a few events, then hang up.
	var got bytes.Buffer
	var next int64
	firstCtx, hangUp := context.WithCancel(ctx)
	for ev, err := range h.client.FollowOutput(firstCtx, p.ID, agentapi.OutputQuery{Offset: 0, Follow: true}) {
		if err != nil {
			t.Fatalf("first follower: %v", err)
		}
		if ev.EOF {
			t.Fatal("process ended before the first follower hung up; make it slower")
		}
		if ev.Offset != next {
			t.Fatalf("event at offset %d, want %d", ev.Offset, next)
		}
		got.Write(ev.Bytes())
		next = ev.End()
		if got.Len() > 60 {
			break
		}
	}
	hangUp()
	if pr, err := h.client.GetProcess(ctx, p.ID); err != nil || !pr.Running {
		t.Fatalf("after the follower left: %+v, %v; want still running", pr, err)
	}

	// Second follower: from the last offset to the end.
	var eof *agentapi.OutputEvent
	for ev, err := range h.client.FollowOutput(ctx, p.ID, agentapi.OutputQuery{Offset: next, Follow: true}) {
		if err != nil {
			t.Fatalf("second follower: %v", err)
		}
		if ev.Offset != next {
			t.Fatalf("event at offset %d, want %d (gap or duplicate)", ev.Offset, next)
		}
		if ev.EOF {
			eof = &ev
			continue
		}
		if len(ev.Bytes()) == 0 || len(ev.Bytes()) > agentapi.MaxOutputChunk {
			t.Fatalf("chunk of %d bytes", len(ev.Bytes()))
		}
		got.Write(ev.Bytes())
		next = ev.End()
	}
	if diff := cmp.Diff(want.String(), got.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&agentapi.OutputEvent{Offset: int64(want.Len()), EOF: true, ExitCode: intp(4)}, eof); diff != "" {
		t.Errorf("eof event (-want +got):\n%s", diff)
	}

	// The file on disk is the same, and the record agrees.
	onDisk, err := os.ReadFile(filepath.Join(h.cfg.StateDir, "procs", p.ID, "output"))
	if err != nil || string(onDisk) != want.String() {
		t.Errorf("output file: %v, %d bytes", err, len(onDisk))
	}
	final := waitExited(t, h.client, p.ID)
	wantProc := agentapi.Process{ID: "cli-run.1", Command: final.Command, Argv: []string{"/bin/sh", "-c", final.Command},
		Cwd: h.cfg.Workdir, ExitCode: intp(4), OutputBytes: int64(want.Len())}
	if diff := cmp.Diff(wantProc, *final, ignoreTimes()); diff != "" {
		t.Errorf("process (-want +got):\n%s", diff)
	}
	if final.FinishedAt == nil || final.FinishedAt.Before(final.StartedAt) {
		t.Errorf("finished_at %v, started_at %v", final.FinishedAt, final.StartedAt)
	}
}

func TestProcessOutputWithoutFollow(t *testing.T) {
	h := startAgent(t, nil)
	ctx := testwait.Context(t, 30*time.Second)
	p, err := h.client.StartProcess(ctx, agentapi.StartProcessRequest{Command: "echo one; echo two; sleep 30"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.ID, "p-") {
		t.Errorf("generated id %q", p.ID)
	}
	testwait.True(t, 5*time.Second, "output", func() bool {
		pr, err := h.client.GetProcess(ctx, p.ID)
		return err == nil && pr.OutputBytes == 8
	})
	collect := func(offset int64) []agentapi.OutputEvent {
		var evs []agentapi.OutputEvent
		for ev, err := range h.client.FollowOutput(ctx, p.ID, agentapi.OutputQuery{Offset: offset, Follow: false}) {
			if err != nil {
				t.Fatalf("FollowOutput: %v", err)
			}
			evs = append(evs, ev)
		}
		return evs
	}
	// Running: what is there, no eof.
	if diff := cmp.Diff([]agentapi.OutputEvent{{Offset: 4, Data: "two\n"}}, collect(4)); diff != "" {
		t.Errorf("running (-want +got):\n%s", diff)
	}
	if evs := collect(8); len(evs) != 0 {
		t.Errorf("at the end of a running process's output: %+v, want nothing", evs)
	}
	// Past the end: 416.
	for _, err := range h.client.FollowOutput(ctx, p.ID, agentapi.OutputQuery{Offset: 9, Follow: false}) {
		if got := errCode(err); got != "offset_out_of_range" {
			t.Errorf("offset past the end: %v, want offset_out_of_range", err)
		}
	}
	if err := h.client.Signal(ctx, p.ID, "KILL"); err != nil {
		t.Fatal(err)
	}
	waitExited(t, h.client, p.ID)
	// Exited: the rest and an eof carrying the signal.
	want := []agentapi.OutputEvent{{Offset: 0, Data: "one\ntwo\n"}, {Offset: 8, EOF: true, Signal: strp("KILL")}}
	if diff := cmp.Diff(want, collect(0)); diff != "" {
		t.Errorf("exited (-want +got):\n%s", diff)
	}
}

// Output that is not UTF-8, and long lines, come through byte for byte.
func TestProcessOutputBinaryAndLongLines(t *testing.T) {
	h := startAgent(t, nil)
	ctx := testwait.Context(t, 30*time.Second)
	p, err := h.client.StartProcess(ctx, agentapi.StartProcessRequest{
		Command: `head -c 100000 /dev/zero | tr '\0' x; printf '\n\377\376\n'; printf 'no newline'`,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat("x", 100000) + "\n\xff\xfe\nno newline"
	var got bytes.Buffer
	var sawEOF bool
	for ev, err := range h.client.FollowOutput(ctx, p.ID, agentapi.OutputQuery{Offset: 0, Follow: true}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Offset != int64(got.Len()) {
			t.Fatalf("offset %d after %d bytes", ev.Offset, got.Len())
		}
		sawEOF = sawEOF || ev.EOF
		got.Write(ev.Bytes())
	}
	if !sawEOF || got.String() != want {
		t.Errorf("eof=%v, got %d bytes, want %d", sawEOF, got.Len(), len(want))
	}
}

// A signal reaches the whole group; DELETE is refused while it runs.
func TestProcessSignalAndDelete(t *testing.T) {
	h := startAgent(t, nil)
	ctx := testwait.Context(t, 30*time.Second)
	p, err := h.client.StartProcess(ctx, agentapi.StartProcessRequest{ID: "grp", Command: "sleep 1000 & sleep 1000"})
	if err != nil {
		t.Fatal(err)
	}
	// The shell and both sleeps, or two processes where sh execs its last command.
	testwait.True(t, 5*time.Second, "both sleeps", func() bool { return len(liveInGroup(t, p.PID)) >= 2 })

	if err := h.client.DeleteProcess(ctx, p.ID); errCode(err) != "conflict" {
		t.Errorf("DELETE while running: %v, want conflict", err)
	}
	if err := h.client.Signal(ctx, p.ID, "BOGUS"); errCode(err) != "bad_request" {
		t.Errorf("bad signal: %v, want bad_request", err)
	}
	if err := h.client.Signal(ctx, p.ID, "TERM"); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	final := waitExited(t, h.client, p.ID)
	if final.ExitCode != nil || final.Signal == nil || *final.Signal != "TERM" {
		t.Errorf("exit_code=%v signal=%v, want nil and TERM", final.ExitCode, final.Signal)
	}
	testwait.True(t, 5*time.Second, "no live process in the group", func() bool { return len(liveInGroup(t, p.PID)) == 0 })

	if err := h.client.Signal(ctx, p.ID, "TERM"); errCode(err) != "conflict" {
		t.Errorf("signal after exit: %v, want conflict", err)
	}
	if err := h.client.DeleteProcess(ctx, p.ID); err != nil {
		t.Fatalf("DELETE after exit: %v", err)
	}
	if _, err := os.Stat(filepath.Join(h.cfg.StateDir, "procs", p.ID)); !os.IsNotExist(err) {
		t.Errorf("folder still there: %v", err)
	}
	if _, err := h.client.GetProcess(ctx, p.ID); errCode(err) != "not_found" {
		t.Errorf("GET after DELETE: %v, want not_found", err)
	}
	if err := h.client.DeleteProcess(ctx, p.ID); errCode(err) != "not_found" {
		t.Errorf("second DELETE: %v, want not_found", err)
	}
}

func TestProcessStartVariants(t *testing.T) {
	h := startAgent(t, nil)
	ctx := testwait.Context(t, 30*time.Second)
	tests := map[string]struct {
		req        agentapi.StartProcessRequest
		wantOutput string
		wantCode   string
	}{
		"argv":             {req: agentapi.StartProcessRequest{ID: "argv", Argv: []string{"printf", "%s|%s", "a b", "$HOME"}}, wantOutput: "a b|$HOME"},
		"stdin":            {req: agentapi.StartProcessRequest{ID: "stdin", Command: "cat", Stdin: "fed\n"}, wantOutput: "fed\n"},
		"env and cwd":      {req: agentapi.StartProcessRequest{ID: "envcwd", Command: `printf %s "$X"; pwd`, Env: map[string]string{"X": "y"}, Cwd: "/"}, wantOutput: "y/\n"},
		"stderr joins":     {req: agentapi.StartProcessRequest{ID: "both", Command: "echo out; echo err >&2"}, wantOutput: "out\nerr\n"},
		"command and argv": {req: agentapi.StartProcessRequest{Command: "true", Argv: []string{"true"}}, wantCode: "bad_request"},
		"neither":          {req: agentapi.StartProcessRequest{ID: "x"}, wantCode: "bad_request"},
		"bad id":           {req: agentapi.StartProcessRequest{ID: "../x", Command: "true"}, wantCode: "bad_request"},
		"dot-dot id":       {req: agentapi.StartProcessRequest{ID: "..", Command: "true"}, wantCode: "bad_request"},
		"long id":          {req: agentapi.StartProcessRequest{ID: strings.Repeat("a", 101), Command: "true"}, wantCode: "bad_request"},
		"missing program":  {req: agentapi.StartProcessRequest{ID: "nope", Argv: []string{"no-such-program-xyz"}}, wantCode: "start_failed"},
		"missing cwd":      {req: agentapi.StartProcessRequest{ID: "nocwd", Command: "true", Cwd: "/no/such/dir"}, wantCode: "invalid_cwd"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := h.client.StartProcess(ctx, tc.req)
			if tc.wantCode != "" {
				if got := errCode(err); got != tc.wantCode {
					t.Fatalf("StartProcess: %v, want code %q", err, tc.wantCode)
				}
				if tc.req.ID != "" && !strings.Contains(tc.req.ID, ".") {
					if _, err := os.Stat(filepath.Join(h.cfg.StateDir, "procs", tc.req.ID)); err == nil {
						t.Error("a failed start left its folder behind")
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("StartProcess: %v", err)
			}
			var out bytes.Buffer
			for ev, err := range h.client.FollowOutput(ctx, p.ID, agentapi.OutputQuery{Offset: 0, Follow: true}) {
				if err != nil {
					t.Fatal(err)
				}
				out.Write(ev.Bytes())
			}
			if out.String() != tc.wantOutput {
				t.Errorf("output %q, want %q", out.String(), tc.wantOutput)
			}
		})
	}
	if _, err := h.client.StartProcess(ctx, agentapi.StartProcessRequest{ID: "argv", Command: "true"}); errCode(err) != "conflict" {
		t.Errorf("reused id: %v, want conflict", err)
	}
}

// The process list survives a new agent on the same state directory: ended
// processes keep their status, ones cut off are reported lost.
func TestProcessListSurvivesRestart(t *testing.T) {
	h := startAgent(t, nil)
	ctx := testwait.Context(t, 30*time.Second)
	if _, err := h.client.StartProcess(ctx, agentapi.StartProcessRequest{ID: "done", Command: "echo hi; exit 3"}); err != nil {
		t.Fatal(err)
	}
	waitExited(t, h.client, "done")
	long, err := h.client.StartProcess(ctx, agentapi.StartProcessRequest{ID: "long", Command: "sleep 30"})
	if err != nil {
		t.Fatal(err)
	}

	h2 := serve(t, h.cfg, h.root)
	got, err := h2.client.ListProcesses(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []agentapi.Process{
		{ID: "done", Command: "echo hi; exit 3", Argv: []string{"/bin/sh", "-c", "echo hi; exit 3"}, Cwd: h.cfg.Workdir, ExitCode: intp(3), OutputBytes: 3},
		{ID: "long", Command: "sleep 30", Argv: []string{"/bin/sh", "-c", "sleep 30"}, Cwd: h.cfg.Workdir, Lost: true},
	}
	if diff := cmp.Diff(want, got, ignoreTimes()); diff != "" {
		t.Errorf("list after restart (-want +got):\n%s", diff)
	}
	if got[1].PID != long.PID || got[0].FinishedAt == nil || got[1].FinishedAt != nil {
		t.Errorf("recorded pids/times: %+v", got)
	}
	// A lost process's output is still readable and ends with an unknown status.
	var evs []agentapi.OutputEvent
	for ev, err := range h2.client.FollowOutput(ctx, "long", agentapi.OutputQuery{Offset: 0, Follow: true}) {
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
	}
	if diff := cmp.Diff([]agentapi.OutputEvent{{Offset: 0, EOF: true}}, evs); diff != "" {
		t.Errorf("lost process output (-want +got):\n%s", diff)
	}
}
