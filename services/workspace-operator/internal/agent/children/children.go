// Package children starts and tracks the agent's child processes, each in its
// own process group, and reaps orphaned zombies without stealing the exit
// status of the children it tracks.
//
// The agent runs as PID 1 of the workspace container, so every orphan in the
// container is re-parented to it and must be reaped, or the process table
// fills with zombies. A plain wait4(-1) loop would also reap the agent's own
// os/exec children and make their cmd.Wait fail with ECHILD. Instead the
// reaper looks in /proc for zombies whose parent is the agent, skips the pids
// it tracks, and waits for exactly the others. Start and the reaper share one
// lock, so a child that exits before Start has recorded its pid cannot be
// mistaken for an orphan.
package children

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Tracker starts children and remembers them until they have been waited for.
// The zero value is not usable; call New.
type Tracker struct {
	mu      sync.Mutex
	live    map[int]struct{}
	changed chan struct{} // closed and replaced whenever a child is forgotten
	self    int
	proc    string
}

// New returns an empty Tracker.
func New() *Tracker {
	return &Tracker{live: map[int]struct{}{}, changed: make(chan struct{}), self: os.Getpid(), proc: "/proc"}
}

// Start starts cmd in a new process group (its pgid is its pid) and tracks
// it. The caller must call Wait.
func (t *Tracker) Start(cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// A group per child lets a timeout or a signal reach the grandchildren too.
	cmd.SysProcAttr.Setpgid = true
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return err
	}
	t.live[cmd.Process.Pid] = struct{}{}
	return nil
}

// Wait waits for a child started with Start and forgets it.
func (t *Tracker) Wait(cmd *exec.Cmd) error {
	err := cmd.Wait()
	// Only forget once the kernel has released the pid, so the reaper never
	// sees a zombie of ours as untracked.
	t.mu.Lock()
	delete(t.live, cmd.Process.Pid)
	close(t.changed)
	t.changed = make(chan struct{})
	t.mu.Unlock()
	return err
}

// Len returns how many tracked children have not been waited for yet.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.live)
}

// SignalAll sends sig to the process group of every tracked child and
// returns how many groups were signalled.
func (t *Tracker) SignalAll(sig syscall.Signal) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for pid := range t.live {
		if syscall.Kill(-pid, sig) == nil {
			n++
		}
	}
	return n
}

// WaitEmpty blocks until no tracked child is left or ctx ends. It reports
// whether the tracker emptied.
func (t *Tracker) WaitEmpty(ctx context.Context) bool {
	for {
		t.mu.Lock()
		n, ch := len(t.live), t.changed
		t.mu.Unlock()
		if n == 0 {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// ReapOrphans waits for every zombie child of this process that the tracker
// does not own and returns their pids.
func (t *Tracker) ReapOrphans() ([]int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	zombies, err := zombieChildren(t.proc, t.self)
	if err != nil {
		return nil, err
	}
	var reaped []int
	for _, pid := range zombies {
		if _, ok := t.live[pid]; ok {
			continue
		}
		var ws syscall.WaitStatus
		got, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		if err != nil && !errors.Is(err, syscall.ECHILD) {
			return reaped, fmt.Errorf("wait4 %d: %w", pid, err)
		}
		if got == pid {
			reaped = append(reaped, pid)
		}
	}
	return reaped, nil
}

// Reap reaps orphans on every SIGCHLD, and every interval as a safety net,
// until ctx ends. onReap, if not nil, sees each batch (for logging).
func (t *Tracker) Reap(ctx context.Context, interval time.Duration, onReap func([]int, error)) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	defer signal.Stop(sigs)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sigs:
		case <-tick.C:
		}
		pids, err := t.ReapOrphans()
		if onReap != nil && (len(pids) > 0 || err != nil) {
			onReap(pids, err)
		}
	}
}

// zombieChildren lists the pids in procDir whose parent is ppid and whose
// state is Z.
func zombieChildren(procDir string, ppid int) ([]int, error) {
	entries, err := os.ReadDir(procDir)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", procDir, err)
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(procDir + "/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		state, parent, ok := parseStat(string(b))
		if ok && state == 'Z' && parent == ppid {
			out = append(out, pid)
		}
	}
	return out, nil
}

// parseStat extracts the state and parent pid from a /proc/<pid>/stat line,
// "pid (comm) S ppid ...". comm may itself contain spaces and parentheses,
// so the fields are found after the last ')'.
func parseStat(s string) (state byte, ppid int, ok bool) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], ppid, true
}
