// Package procs runs detached processes: long agent-CLI runs that must
// outlive whoever watches them. Each process gets its own process group and a
// folder <dir>/<id>/ holding its combined output (one append-only file, so a
// byte offset names the same byte forever) and meta.json (so the list
// survives an agent restart).
package procs

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"sortie.dev/services/workspace-operator/internal/agent/children"
	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// Errors the HTTP layer maps to statuses.
var (
	ErrNotFound   = errors.New("process not found")
	ErrExists     = errors.New("process id already in use")
	ErrRunning    = errors.New("process is running")
	ErrNotRunning = errors.New("process is not running")
	ErrBadRequest = errors.New("invalid process request")
	ErrStart      = errors.New("cannot start process")
	ErrOffset     = errors.New("offset is past the end of the output")
)

const (
	outputFile = "output"
	metaFile   = "meta.json"
)

var idPattern = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,100}$`)

// Starter starts and waits for children; *children.Tracker implements it.
type Starter interface {
	Start(*exec.Cmd) error
	Wait(*exec.Cmd) error
}

// Options configure a Manager.
type Options struct {
	// Dir holds one folder per process.
	Dir string
	// Workdir is where relative cwds start.
	Workdir string
	// Env is the base environment of every process.
	Env      []string
	Children Starter
	// Poll is how often a follower looks for new output. Default 50ms.
	Poll time.Duration
	// Log receives failures that do not fail a request. Default: discarded.
	Log *slog.Logger
	// MaxOutput bounds the output a process keeps on disk: past it the
	// oldest bytes are dropped (a hole is punched, so offsets keep naming
	// the same bytes) and a read from before the kept part starts at it.
	// Zero keeps everything.
	MaxOutput int64
	// TrimEvery is how often a running process's output is brought back
	// within MaxOutput. Default 1s.
	TrimEvery time.Duration
}

// Manager owns the detached processes.
type Manager struct {
	opts    Options
	mu      sync.Mutex
	procs   map[string]*proc
	waiters sync.WaitGroup
}

// proc is one process. meta is guarded by mu; done is closed once the end
// of the process has been recorded (at once for a process loaded from disk).
type proc struct {
	dir      string
	mu       sync.Mutex
	meta     meta
	done     chan struct{}
	trimming sync.Mutex // one trim of the output at a time
}

// meta is what meta.json holds.
type meta struct {
	ID         string     `json:"id"`
	PID        int        `json:"pid"`
	Command    string     `json:"command"`
	Argv       []string   `json:"argv"`
	Cwd        string     `json:"cwd"`
	Running    bool       `json:"running"`
	ExitCode   *int       `json:"exit_code"`
	Signal     *string    `json:"signal"`
	StartedAt  time.Time  `json:"started_at"`
	FinishedAt *time.Time `json:"finished_at"`
	Lost       bool       `json:"lost,omitempty"`
	// OutputStart is where the kept output starts; the bytes before it
	// were dropped to keep within Options.MaxOutput.
	OutputStart int64 `json:"output_start,omitempty"`
}

// New returns a Manager over opts.Dir, loading the processes an earlier
// agent recorded there. Those still marked running were cut off by the
// agent's end and are reported as lost: their exit status is unknowable.
func New(opts Options) (*Manager, error) {
	if opts.Poll <= 0 {
		opts.Poll = 50 * time.Millisecond
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.TrimEvery <= 0 {
		opts.TrimEvery = time.Second
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create process dir: %w", err)
	}
	m := &Manager{opts: opts, procs: map[string]*proc{}}
	entries, err := os.ReadDir(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("list process dir: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p, err := load(filepath.Join(opts.Dir, e.Name()))
		if err != nil {
			continue // a half-created folder from a crash; nothing to report
		}
		m.procs[p.meta.ID] = p
	}
	return m, nil
}

func load(dir string) (*proc, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil {
		return nil, err
	}
	var md meta
	if err := json.Unmarshal(b, &md); err != nil {
		return nil, err
	}
	if md.ID != filepath.Base(dir) {
		return nil, fmt.Errorf("meta id %q in folder %q", md.ID, dir)
	}
	if md.Running {
		md.Running, md.Lost, md.ExitCode, md.Signal = false, true, nil, nil
	}
	done := make(chan struct{})
	close(done)
	return &proc{dir: dir, meta: md, done: done}, nil
}

// Start starts a detached process.
func (m *Manager) Start(req agentapi.StartProcessRequest) (agentapi.Process, error) {
	id, err := checkID(req.ID)
	if err != nil {
		return agentapi.Process{}, err
	}
	argv, err := argvOf(req)
	if err != nil {
		return agentapi.Process{}, err
	}
	dir, err := children.Dir(m.opts.Workdir, req.Cwd)
	if err != nil {
		return agentapi.Process{}, err
	}
	env, err := children.Environ(m.opts.Env, req.Env)
	if err != nil {
		return agentapi.Process{}, err
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.procs[id]; ok {
		return agentapi.Process{}, fmt.Errorf("%w: %s", ErrExists, id)
	}
	pdir := filepath.Join(m.opts.Dir, id)
	// Mkdir (not MkdirAll) also claims ids left on disk by a crash.
	if err := os.Mkdir(pdir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return agentapi.Process{}, fmt.Errorf("%w: %s", ErrExists, id)
		}
		return agentapi.Process{}, fmt.Errorf("create process folder: %w", err)
	}
	p, cmd, err := m.start(spec{id: id, dir: pdir, command: req.Command, argv: argv, cwd: dir, env: env, stdin: req.Stdin})
	if err != nil {
		_ = os.RemoveAll(pdir)
		return agentapi.Process{}, err
	}
	m.procs[id] = p
	m.waiters.Go(func() { m.wait(p, cmd) })
	if m.opts.MaxOutput > 0 {
		m.waiters.Go(func() { m.bound(p) })
	}
	return p.view(), nil
}

// spec is a validated start request.
type spec struct {
	id, dir string // the process's id and folder
	command string
	argv    []string
	cwd     string
	env     []string
	stdin   string
}

func (m *Manager) start(s spec) (*proc, *exec.Cmd, error) {
	out, err := os.OpenFile(filepath.Join(s.dir, outputFile), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("create output file: %w", err)
	}
	defer out.Close() // the child has its own copy
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Dir, cmd.Env = s.cwd, s.env
	// The child writes straight into the file, so its output keeps being
	// recorded even while nobody (not even the agent) reads it.
	cmd.Stdout, cmd.Stderr = out, out
	if s.stdin != "" {
		cmd.Stdin = strings.NewReader(s.stdin)
		// Wait also waits for os/exec's stdin copier; a grandchild that
		// keeps stdin open without reading must not hold up the record.
		cmd.WaitDelay = 2 * time.Second
	}
	if err := m.opts.Children.Start(cmd); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
			return nil, nil, fmt.Errorf("%w: %w", ErrStart, err)
		}
		return nil, nil, fmt.Errorf("start process: %w", err)
	}
	p := &proc{dir: s.dir, done: make(chan struct{}), meta: meta{
		ID: s.id, PID: cmd.Process.Pid, Command: s.command, Argv: s.argv, Cwd: s.cwd,
		Running: true, StartedAt: time.Now().UTC(),
	}}
	if err := writeMeta(s.dir, p.meta); err != nil {
		// The process runs and is tracked in memory; only a restart of the
		// agent would lose it, which is no reason to kill it now.
		m.opts.Log.Warn("record process start", "id", s.id, "err", err)
	}
	return p, cmd, nil
}

// wait records the end of a process.
func (m *Manager) wait(p *proc, cmd *exec.Cmd) {
	_ = m.opts.Children.Wait(cmd) // the status is in cmd.ProcessState
	if m.opts.MaxOutput > 0 {
		// Before the end is recorded, so that whoever sees it has ended
		// also finds its output within the bound.
		if err := m.trim(p); err != nil {
			m.opts.Log.Warn("bound process output", "id", p.id(), "err", err)
		}
	}
	code, sig := children.Status(cmd.ProcessState)
	now := time.Now().UTC()
	p.mu.Lock()
	p.meta.Running, p.meta.ExitCode, p.meta.Signal, p.meta.FinishedAt = false, code, sig, &now
	md := p.meta
	p.mu.Unlock()
	if err := writeMeta(p.dir, md); err != nil {
		m.opts.Log.Warn("record process end", "id", md.ID, "err", err)
	}
	close(p.done)
}

// Drain waits until the end of every started process has been recorded, or
// until timeout.
func (m *Manager) Drain(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { m.waiters.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Get describes one process.
func (m *Manager) Get(id string) (agentapi.Process, error) {
	p, err := m.lookup(id)
	if err != nil {
		return agentapi.Process{}, err
	}
	return p.view(), nil
}

// List describes every process, oldest first.
func (m *Manager) List() []agentapi.Process {
	m.mu.Lock()
	ps := make([]*proc, 0, len(m.procs))
	for _, p := range m.procs {
		ps = append(ps, p)
	}
	m.mu.Unlock()
	out := make([]agentapi.Process, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.view())
	}
	slices.SortFunc(out, func(a, b agentapi.Process) int {
		if c := a.StartedAt.Compare(b.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Signal sends sig to the process's group.
func (m *Manager) Signal(id string, sig syscall.Signal) error {
	p, err := m.lookup(id)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.meta.Running {
		return fmt.Errorf("%w: %s", ErrNotRunning, id)
	}
	if err := syscall.Kill(-p.meta.PID, sig); err != nil {
		return fmt.Errorf("signal process group %d: %w", p.meta.PID, err)
	}
	return nil
}

// Delete forgets an exited process and removes its folder.
func (m *Manager) Delete(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.procs[id]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	p.mu.Lock()
	running := p.meta.Running
	p.mu.Unlock()
	if running {
		return fmt.Errorf("%w: %s", ErrRunning, id)
	}
	if err := os.RemoveAll(p.dir); err != nil {
		return fmt.Errorf("remove process folder: %w", err)
	}
	delete(m.procs, id)
	return nil
}

func (m *Manager) lookup(id string) (*proc, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.procs[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return p, nil
}

func (p *proc) view() agentapi.Process {
	p.mu.Lock()
	md := p.meta
	p.mu.Unlock()
	var size int64
	if fi, err := os.Stat(filepath.Join(p.dir, outputFile)); err == nil {
		size = fi.Size()
	}
	return agentapi.Process{
		ID: md.ID, PID: md.PID, Command: md.Command, Argv: md.Argv, Cwd: md.Cwd,
		Running: md.Running, ExitCode: md.ExitCode, Signal: md.Signal,
		StartedAt: md.StartedAt, FinishedAt: md.FinishedAt, OutputBytes: size, Lost: md.Lost,
		OutputStart: md.OutputStart,
	}
}

func checkID(id string) (string, error) {
	if id == "" {
		return "p-" + strings.ToLower(rand.Text()[:16]), nil
	}
	if !idPattern.MatchString(id) || id == "." || id == ".." {
		return "", fmt.Errorf("%w: id %q must match [a-zA-Z0-9_.-]{1,100}", ErrBadRequest, id)
	}
	return id, nil
}

func argvOf(req agentapi.StartProcessRequest) ([]string, error) {
	switch {
	case req.Command != "" && len(req.Argv) > 0:
		return nil, fmt.Errorf("%w: give command or argv, not both", ErrBadRequest)
	case req.Command != "":
		return []string{"/bin/sh", "-c", req.Command}, nil
	case len(req.Argv) > 0 && req.Argv[0] != "":
		return slices.Clone(req.Argv), nil
	}
	return nil, fmt.Errorf("%w: command or argv is required", ErrBadRequest)
}

// writeMeta replaces meta.json atomically, so a crash leaves the old or the
// new version, never half of one.
func writeMeta(dir string, md meta) error {
	b, err := json.MarshalIndent(md, "", "  ")
	if err != nil {
		return fmt.Errorf("encode meta: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".meta-*")
	if err != nil {
		return fmt.Errorf("write meta: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("write meta: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write meta: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, metaFile)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write meta: %w", err)
	}
	return nil
}
