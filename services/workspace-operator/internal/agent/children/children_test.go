package children

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sortie.dev/services/kit/testwait"
)

func TestMain(m *testing.M) {
	// The reaper must run in a process of its own: it is a subreaper there,
	// and nothing but the tracker starts children in it.
	if os.Getenv("CHILDREN_TEST_HELPER") == "reap" {
		os.Exit(reapHelper())
	}
	os.Exit(m.Run())
}

func TestParseStat(t *testing.T) {
	tests := map[string]struct {
		line      string
		wantState byte
		wantPPID  int
		wantOK    bool
	}{
		"plain":           {line: "123 (sleep) Z 1 123 123 0 -1", wantState: 'Z', wantPPID: 1, wantOK: true},
		"comm with space": {line: "9 (my prog) S 42 9 9 0", wantState: 'S', wantPPID: 42, wantOK: true},
		"comm with paren": {line: "9 (a) Z (b)) R 7 9 9", wantState: 'R', wantPPID: 7, wantOK: true},
		"truncated":       {line: "9 (x) S", wantOK: false},
		"garbage":         {line: "nonsense", wantOK: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			state, ppid, ok := parseStat(tc.line)
			if ok != tc.wantOK || (ok && (state != tc.wantState || ppid != tc.wantPPID)) {
				t.Errorf("parseStat(%q) = %c, %d, %v; want %c, %d, %v", tc.line, state, ppid, ok, tc.wantState, tc.wantPPID, tc.wantOK)
			}
		})
	}
}

// Start puts each child in a process group of its own.
func TestStartNewProcessGroup(t *testing.T) {
	tr := New()
	cmd := exec.Command("sleep", "5")
	if err := tr.Start(cmd); err != nil {
		t.Fatal(err)
	}
	pgid, err := syscall.Getpgid(cmd.Process.Pid)
	if err != nil || pgid != cmd.Process.Pid {
		t.Errorf("pgid = %d, %v; want %d", pgid, err, cmd.Process.Pid)
	}
	if tr.Len() != 1 {
		t.Errorf("Len = %d", tr.Len())
	}
	if n := tr.SignalAll(syscall.SIGKILL); n != 1 {
		t.Errorf("SignalAll = %d", n)
	}
	ctx := testwait.Context(t, 5*time.Second)
	go func() { _ = tr.Wait(cmd) }()
	if !tr.WaitEmpty(ctx) {
		t.Fatal("tracker did not empty")
	}
}

type reapReport struct {
	Orphans     []int  `json:"orphans"`
	Reaped      []int  `json:"reaped"`
	TrackedExit int    `json:"tracked_exit"`
	WaitErr     string `json:"wait_err"`
	Zombies     []int  `json:"zombies"`
}

// Orphans re-parented to the agent are reaped on SIGCHLD, while a tracked
// child that exits meanwhile keeps its exit status for its own Wait.
func TestReapOrphans(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "CHILDREN_TEST_HELPER=reap")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var r reapReport
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("helper output %q: %v", out, err)
	}
	slices.Sort(r.Orphans)
	slices.Sort(r.Reaped)
	want := reapReport{Orphans: r.Orphans, Reaped: r.Orphans, TrackedExit: 5}
	if diff := cmp.Diff(want, r); diff != "" {
		t.Errorf("helper report (-want +got):\n%s", diff)
	}
	if len(r.Orphans) != 3 {
		t.Errorf("orphans %v, want 3", r.Orphans)
	}
}

func reapHelper() int {
	report := reapReport{}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	if err := BecomeSubreaper(); err != nil {
		return fail(err)
	}
	tr := New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reapedCh := make(chan int, 16)
	// A long interval: only SIGCHLD can trigger the reaping seen here.
	go tr.Reap(ctx, time.Hour, func(pids []int, err error) {
		if err != nil {
			fmt.Fprintln(os.Stderr, "reap:", err)
		}
		for _, p := range pids {
			reapedCh <- p
		}
	})

	// A tracked child that exits while orphans are being reaped.
	tracked := exec.Command("sh", "-c", "sleep 0.3; exit 5")
	if err := tr.Start(tracked); err != nil {
		return fail(err)
	}
	// Each maker leaves a background sleep behind, which becomes our
	// orphan and then a zombie.
	for _, d := range []string{"0.1", "0.2", "0.4"} {
		maker := exec.Command("sh", "-c", "sleep "+d+" >/dev/null 2>&1 & echo $!")
		var sb strings.Builder
		maker.Stdout = &sb
		if err := tr.Start(maker); err != nil {
			return fail(err)
		}
		if err := tr.Wait(maker); err != nil {
			return fail(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(sb.String()))
		if err != nil {
			return fail(err)
		}
		report.Orphans = append(report.Orphans, pid)
	}
	// The tracked child exits (at 0.3s) before its Wait below: it is a
	// zombie for a while, during which SIGCHLDs (its own, the last
	// orphan's) make the reaper look, and it must stay ours. Wait for it
	// to be a zombie (or gone, which the Wait below reports), then leave
	// the reaper that while: the window is the behaviour under test.
	if err := testwait.Until(ctx, 5*time.Second, func() (bool, string) {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", tracked.Process.Pid))
		if err != nil {
			return true, "" // reaped by someone: tr.Wait says so
		}
		state, _, ok := parseStat(string(st))
		return ok && state == 'Z', fmt.Sprintf("state %c", state)
	}); err != nil {
		return fail(fmt.Errorf("the tracked child never exited: %w", err))
	}
	time.Sleep(200 * time.Millisecond)
	err := tr.Wait(tracked)
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		report.TrackedExit = ee.ExitCode()
	case err != nil:
		report.WaitErr = err.Error()
	}
	report.Reaped = collect(reapedCh, len(report.Orphans), testwait.Scaled(5*time.Second))
	zombies, err := zombieChildren("/proc", os.Getpid())
	if err != nil {
		return fail(err)
	}
	report.Zombies = zombies
	if err := json.NewEncoder(os.Stdout).Encode(report); err != nil {
		return fail(err)
	}
	return 0
}

// collect receives n values from ch, or fewer if timeout passes first.
func collect(ch <-chan int, n int, timeout time.Duration) []int {
	var got []int
	deadline := time.After(timeout)
	for len(got) < n {
		select {
		case v := <-ch:
			got = append(got, v)
		case <-deadline:
			return got
		}
	}
	return got
}
