// Package initscript runs the workspace's init script once per agent start,
// and again on request, appending its output to a log file.
package initscript

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// ErrRunning is returned by Start while a run is in progress.
var ErrRunning = errors.New("init script is running")

// Exit codes reported for runs that did not exit on their own, as a shell
// reports them.
const (
	exitCannotRun = 127
	exitTimedOut  = 124
)

// Starter starts and waits for children; *children.Tracker implements it.
type Starter interface {
	Start(*exec.Cmd) error
	Wait(*exec.Cmd) error
}

// Options configure a Runner.
type Options struct {
	// Script is the script's path; empty means there is none.
	Script  string
	Workdir string
	// LogPath is the log every run appends to.
	LogPath  string
	Env      []string
	Timeout  time.Duration
	Children Starter
	Log      *slog.Logger
}

// Runner runs the init script. Only one run is in progress at a time.
type Runner struct {
	opts   Options
	mu     sync.Mutex
	status agentapi.InitStatus
	done   chan struct{} // closed at the end of the current run
}

// New returns a Runner that has not run yet.
func New(opts Options) *Runner {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	done := make(chan struct{})
	close(done)
	return &Runner{opts: opts, status: agentapi.InitStatus{State: agentapi.InitPending}, done: done}
}

// Status reports the state of the latest run.
func (r *Runner) Status() agentapi.InitStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Done returns a channel closed when no run is in progress.
func (r *Runner) Done() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done
}

// Start begins a run in the background and returns the status it starts
// with. The script is looked up afresh each time, so a client can replace it
// and run it again. A missing script counts as a successful run of nothing.
func (r *Runner) Start() (agentapi.InitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.status.State == agentapi.InitRunning {
		return r.status, ErrRunning
	}
	now := time.Now().UTC()
	if !r.scriptExists() {
		r.status = agentapi.InitStatus{State: agentapi.InitSucceeded, Runs: r.status.Runs}
		return r.status, nil
	}
	r.status = agentapi.InitStatus{State: agentapi.InitRunning, StartedAt: &now, Runs: r.status.Runs + 1}
	r.done = make(chan struct{})
	go r.run(r.status.Runs, r.done)
	return r.status, nil
}

func (r *Runner) scriptExists() bool {
	if r.opts.Script == "" {
		return false
	}
	_, err := os.Stat(r.opts.Script)
	return !errors.Is(err, fs.ErrNotExist)
}

func (r *Runner) run(n int, done chan struct{}) {
	defer close(done)
	code := r.execute(n)
	now := time.Now().UTC()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status.FinishedAt, r.status.ExitCode = &now, &code
	r.status.State = agentapi.InitFailed
	if code == 0 {
		r.status.State = agentapi.InitSucceeded
	}
	r.opts.Log.Info("init script finished", "run", n, "exit_code", code)
}

// execute runs the script once and returns its exit code.
func (r *Runner) execute(n int) int {
	log, err := os.OpenFile(r.opts.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		r.opts.Log.Error("open init log", "err", err)
		return exitCannotRun
	}
	defer log.Close()
	argv := r.argv()
	start := time.Now()
	fmt.Fprintf(log, "=== sortie init run %d started %s: %q ===\n", n, start.UTC().Format(time.RFC3339), argv)

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = r.opts.Workdir, r.opts.Env
	cmd.Stdout, cmd.Stderr = log, log // one file: stdout and stderr interleaved as written
	if err := r.opts.Children.Start(cmd); err != nil {
		fmt.Fprintf(log, "=== cannot start init script: %v ===\n", err)
		return exitCannotRun
	}
	timer := time.AfterFunc(r.opts.Timeout, func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	})
	_ = r.opts.Children.Wait(cmd) // the status is in cmd.ProcessState
	timedOut := !timer.Stop()
	code := exitCode(cmd.ProcessState, timedOut)
	took := time.Since(start).Round(time.Millisecond)
	switch {
	case timedOut:
		fmt.Fprintf(log, "\n=== init run %d timed out after %s (exit code %d) ===\n", n, r.opts.Timeout, code)
	default:
		fmt.Fprintf(log, "=== init run %d finished in %s with exit code %d ===\n", n, took, code)
	}
	return code
}

// argv runs an executable script with a shebang directly, so its
// interpreter (bash, python) is honoured; anything else goes to /bin/sh.
func (r *Runner) argv() []string {
	f, err := os.Open(r.opts.Script)
	if err == nil {
		defer f.Close()
		head := make([]byte, 2)
		fi, serr := f.Stat()
		if _, rerr := io.ReadFull(f, head); rerr == nil && serr == nil &&
			string(head) == "#!" && fi.Mode().Perm()&0o111 != 0 {
			return []string{r.opts.Script}
		}
	}
	return []string{"/bin/sh", r.opts.Script}
}

func exitCode(ps *os.ProcessState, timedOut bool) int {
	if timedOut {
		return exitTimedOut
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}
