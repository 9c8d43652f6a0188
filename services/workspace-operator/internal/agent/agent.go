// Package agent is the workspace-agent: the small HTTP server that runs as
// PID 1 in every workspace Pod and gives the workspace-operator exec,
// detached processes, file sync, the init script, stats and readiness.
package agent

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"sortie.dev/services/workspace-operator/internal/agent/children"
	"sortie.dev/services/workspace-operator/internal/agent/files"
	"sortie.dev/services/workspace-operator/internal/agent/initscript"
	"sortie.dev/services/workspace-operator/internal/agent/procs"
	"sortie.dev/services/workspace-operator/internal/agent/shell"
	"sortie.dev/services/workspace-operator/internal/agent/stats"
)

// Body limits.
const (
	maxJSONBody = 1 << 20
	maxFileBody = 512 << 20
)

// Agent is one agent instance. Build it with New, then call Run (or Serve).
type Agent struct {
	cfg      Config
	log      *slog.Logger
	tokenSum [sha256.Size]byte

	children *children.Tracker
	shell    *shell.Runner
	procs    *procs.Manager
	init     *initscript.Runner
	files    *files.Roots
	stats    stats.Reader

	stopping chan struct{} // closed when shutdown starts; ends output streams
	stopOnce sync.Once
}

// New prepares an agent: it creates the state directory and loads the
// detached processes recorded there. Nothing runs until Serve.
func New(cfg Config, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	roots, err := files.NewRoots(cfg.Roots)
	if err != nil {
		return nil, fmt.Errorf("file roots: %w", err)
	}
	tracker := children.New()
	env := children.InheritedEnv(os.Environ())
	pm, err := procs.New(procs.Options{
		Dir: filepath.Join(cfg.StateDir, "procs"), Workdir: cfg.Workdir, Env: env,
		Children: tracker, Log: log.With("component", "procs"), MaxOutput: cfg.ProcessMaxOutput,
	})
	if err != nil {
		return nil, err
	}
	return &Agent{
		cfg:      cfg,
		log:      log,
		tokenSum: sha256.Sum256([]byte(cfg.Token)),
		children: tracker,
		shell: &shell.Runner{
			Children: tracker, Workdir: cfg.Workdir, Env: env,
			MaxOutput: cfg.ExecMaxOutput, DrainDelay: 2 * time.Second,
		},
		procs: pm,
		init: initscript.New(initscript.Options{
			Script: cfg.InitScript, Workdir: cfg.Workdir, LogPath: filepath.Join(cfg.StateDir, "init.log"),
			Env: env, Timeout: cfg.InitTimeout, Children: tracker, Log: log.With("component", "init"),
		}),
		files:    roots,
		stats:    stats.Reader{CgroupRoot: cfg.CgroupRoot, ProcRoot: "/proc", DiskPath: cfg.Workdir},
		stopping: make(chan struct{}),
	}, nil
}

// Run listens on the configured address and serves until ctx ends.
func (a *Agent) Run(ctx context.Context) error {
	// Bind before anything else so that a port clash fails at once.
	ln, err := net.Listen("tcp", a.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return a.Serve(ctx, ln)
}

// Serve starts the init script and the zombie reaper, serves the API on ln
// until ctx ends, then shuts down: it stops accepting, sends SIGTERM to every
// process group it started, waits up to the grace period, and SIGKILLs what
// is left. It returns nil after a clean shutdown. An Agent serves once.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	reapCtx, stopReaping := context.WithCancel(context.Background())
	defer stopReaping()
	if err := a.startReaper(reapCtx); err != nil {
		ln.Close()
		return err
	}
	if _, err := a.init.Start(); err != nil {
		a.log.Error("start init script", "err", err)
	}

	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
		// No WriteTimeout: an exec may run 10 minutes and a follow much longer.
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	a.log.Info("workspace-agent serving", "addr", ln.Addr().String(), "pid", os.Getpid())

	select {
	case err := <-served:
		a.terminate()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	a.log.Info("shutting down", "grace", a.cfg.Grace.String())
	a.stopOnce.Do(func() { close(a.stopping) })
	shutdownCtx, cancel := context.WithTimeout(context.Background(), a.cfg.Grace+5*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(shutdownCtx) }()
	a.terminate()
	if err := <-shut; err != nil {
		a.log.Warn("http shutdown", "err", err)
		srv.Close()
	}
	a.log.Info("stopped")
	return nil
}

// startReaper reaps orphans when the agent is PID 1, or when configured as
// a subreaper. Anywhere else it must not: another part of the process (a
// test binary, say) may own children the tracker does not know about.
func (a *Agent) startReaper(ctx context.Context) error {
	pid1 := os.Getpid() == 1
	if !pid1 && !a.cfg.Subreaper {
		return nil
	}
	if !pid1 {
		if err := children.BecomeSubreaper(); err != nil {
			return err
		}
	}
	go a.children.Reap(ctx, 30*time.Second, func(pids []int, err error) {
		if err != nil {
			a.log.Warn("reap orphans", "err", err)
		}
		if len(pids) > 0 {
			a.log.Debug("reaped orphans", "pids", pids)
		}
	})
	return nil
}

// terminate stops every child the agent started: SIGTERM to each process
// group, up to the grace period to exit, then SIGKILL.
func (a *Agent) terminate() {
	if n := a.children.SignalAll(syscall.SIGTERM); n > 0 {
		a.log.Info("sent SIGTERM to process groups", "groups", n)
	}
	graceCtx, cancel := context.WithTimeout(context.Background(), a.cfg.Grace)
	defer cancel()
	if !a.children.WaitEmpty(graceCtx) {
		n := a.children.SignalAll(syscall.SIGKILL)
		a.log.Warn("grace period over, sent SIGKILL", "groups", n)
		killCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.children.WaitEmpty(killCtx)
	}
	// Let the detached processes' ends reach meta.json before we exit.
	if !a.procs.Drain(2 * time.Second) {
		a.log.Warn("process records not all written")
	}
}
