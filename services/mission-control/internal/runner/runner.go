// Package runner drives mission turns: it runs the mission's agent CLI as a
// detached process in the mission's workspace (through the
// workspace-operator), follows its output, turns each line into events
// with the backend's parser, and stores them.
//
// Which replica drives a run is decided by a lease in Redis. Every event
// append is fenced by that lease and counted in the run record in the same
// atomic step, so a replica that takes a run over (its driver died, or it
// restarted) re-reads the process output from the start of the turn, feeds
// the same deterministic parser, and skips exactly the events already
// stored: none is lost, none is duplicated. Re-reading from the start rather
// than from the stored offset is deliberate: the parsers keep state across
// lines (open tool calls, accumulated text) that cannot be restored from an
// offset alone. The stored offset is kept for diagnostics.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"

	"sortie.dev/services/kit/redisconn"
	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/backend/openai"
	"sortie.dev/services/mission-control/internal/control"
	"sortie.dev/services/mission-control/internal/event"
	"sortie.dev/services/mission-control/internal/events"
	"sortie.dev/services/mission-control/internal/missions"
	"sortie.dev/services/mission-control/internal/workspaces"
)

// Missions is the mission store the runner needs.
type Missions interface {
	Load(ctx context.Context, id string) (*missions.Mission, error)
	Update(ctx context.Context, id string, fn func(*missions.Mission) error) (*missions.Mission, error)
	Current(ctx context.Context, user string) (string, error)
}

// Events stores and publishes events.
type Events interface {
	Append(ctx context.Context, e event.Event, o events.AppendOptions) (event.Event, string, error)
	Publish(ctx context.Context, user string, e event.Event) error
	Count(ctx context.Context, missionID string) (int64, error)
	Replay(ctx context.Context, missionID string, kinds []event.Kind, limit, offset int) ([]event.Event, error)
	Conversation(ctx context.Context, missionID string, n int, skip func(event.Event) bool) ([]event.Event, error)
}

// Workspaces is the workspace-operator. The runner reaches it only through
// As(mission owner): every call of a turn carries a delegated token for the
// mission's owner, never mission-control's own service token.
type Workspaces interface {
	As(user string) *workspaces.User
}

// Options configure a Runner.
type Options struct {
	// Owner names this replica in leases; unique per process.
	Owner       string
	MaxRunning  int
	LeaseTTL    time.Duration
	CancelGrace time.Duration
	// CLIs maps a backend to its executable in the workspace.
	CLIs map[string]string
	// Credential returns the secret (API key or OAuth access token) of
	// provider (anthropic, openai, amp) that a run of user uses: the
	// user's own, else a shared one; "" when there is none.
	Credential func(ctx context.Context, user, provider string) string
	// StartupTimeout and IdleTimeout are the watchdogs of every backend: a
	// CLI that prints nothing within StartupTimeout of its start, or
	// nothing for IdleTimeout after that, is stopped like a cancel and the
	// turn fails (resumable). For the built-in backend they apply to each
	// model call's stream. Zero disables either.
	StartupTimeout time.Duration
	IdleTimeout    time.Duration
	// OpenAI configures the built-in backend; its APIKey, when empty, is
	// the mission owner's openai credential (Credential) at each turn.
	OpenAI openai.Config
	// LineLimit is the longest line of CLI output held whole
	// (backend.DefaultMaxLine when zero); FieldLimit the longest text kept
	// of each string of a longer JSON line, of a turn's streamed text and
	// of each thinking block (backend.DefaultFieldLimit when zero).
	LineLimit, FieldLimit int
	// Agents reads a library agent's markdown (nil: no library); found is
	// false when the library has none of that name.
	Agents func(ctx context.Context, name string) (content string, found bool, err error)
	Log    *slog.Logger
}

// Runner starts and drives turns.
type Runner struct {
	missions   Missions
	events     Events
	control    *control.Store
	workspaces Workspaces
	opts       Options
	log        *slog.Logger

	mu      sync.Mutex
	base    context.Context
	driving map[string]bool
	wg      sync.WaitGroup
}

// New returns a Runner; call Start before use.
func New(m Missions, e Events, c *control.Store, w Workspaces, opts Options) *Runner {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Credential == nil {
		opts.Credential = func(context.Context, string, string) string { return "" }
	}
	if opts.LineLimit <= 0 {
		opts.LineLimit = backend.DefaultMaxLine
	}
	if opts.FieldLimit <= 0 {
		opts.FieldLimit = backend.DefaultFieldLimit
	}
	return &Runner{missions: m, events: e, control: c, workspaces: w, opts: opts, log: opts.Log, driving: map[string]bool{}}
}

// Start begins driving: it reattaches runs whose lease expired (this
// replica's previous life, or a dead replica) and keeps looking for such
// runs until ctx ends. Drives end with ctx; their processes keep running
// and their leases are released for another replica.
func (r *Runner) Start(ctx context.Context) {
	r.mu.Lock()
	r.base = ctx
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		tick := time.NewTicker(max(r.opts.LeaseTTL/3, 100*time.Millisecond))
		defer tick.Stop()
		for {
			r.adopt(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}

// Wait returns when every drive has ended (after Start's ctx ended).
func (r *Runner) Wait() { r.wg.Wait() }

// Driving reports how many runs this replica drives.
func (r *Runner) Driving() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.driving)
}

// adopt takes over every run whose lease is free.
func (r *Runner) adopt(ctx context.Context) {
	ids, err := r.control.Runs(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Warn("cannot list runs", "error", err.Error())
		}
		return
	}
	for _, id := range ids {
		if r.isDriving(id) {
			continue
		}
		ok, err := r.control.Acquire(ctx, id, r.opts.Owner, r.opts.LeaseTTL)
		if err != nil || !ok {
			continue
		}
		r.log.Info("taking over run", "mission_id", id)
		r.launch(id)
	}
	// Messages that wait while their mission is idle (whoever should have
	// started them died first) start here, on whichever replica sees them.
	users, err := r.control.WaitingUsers(ctx)
	if err != nil {
		return
	}
	for _, u := range users {
		if _, err := r.kick(ctx, u); err != nil && ctx.Err() == nil {
			r.log.Warn("cannot start waiting messages", "user_id", u, "error", err.Error())
		}
	}
}

func (r *Runner) isDriving(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.driving[id]
}

// launch drives mission id in the background unless it already is.
func (r *Runner) launch(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.driving[id] || r.base == nil || r.base.Err() != nil {
		return
	}
	r.driving[id] = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.drive(r.base, id)
		r.mu.Lock()
		delete(r.driving, id)
		r.mu.Unlock()
	}()
}

// Kick starts the next queued message of every mission of the user that
// is idle, as far as the user's limit allows.
func (r *Runner) Kick(ctx context.Context, user string) error {
	if _, err := r.kick(ctx, user); err != nil {
		return err
	}
	return r.Snapshot(ctx, user)
}

// kick is Kick without the status publication; it reports how many turns
// it started.
func (r *Runner) kick(ctx context.Context, user string) (int, error) {
	ids, err := r.control.QueuedMissions(ctx, user)
	if err != nil {
		return 0, err
	}
	if len(ids) == 0 {
		return 0, r.control.ForgetIfIdle(ctx, user)
	}
	started := 0
	for _, id := range ids {
		run, err := r.control.TryStart(ctx, user, id, r.opts.Owner, r.opts.MaxRunning, r.opts.LeaseTTL, missions.NewID(), missions.NewID())
		if err != nil {
			return started, err
		}
		if run != nil {
			started++
			r.launch(id)
		}
	}
	return started, nil
}

// Status computes the user's control status.
func (r *Runner) Status(ctx context.Context, user string) (event.Event, error) {
	running, err := r.control.Running(ctx, user)
	if err != nil {
		return event.Event{}, err
	}
	q, err := r.control.Queue(ctx, user)
	if err != nil {
		return event.Event{}, err
	}
	cur, err := r.missions.Current(ctx, user)
	if err != nil {
		return event.Event{}, err
	}
	st := event.Event{Kind: event.KindStatus, State: "idle", QueueLen: len(q), MissionID: cur}
	if len(running) > 0 {
		st.State = "running"
		if cur == "" || !contains(running, cur) {
			st.MissionID = running[0]
		}
	}
	return st, nil
}

// Snapshot publishes the user's control status to their streams.
func (r *Runner) Snapshot(ctx context.Context, user string) error {
	st, err := r.Status(ctx, user)
	if err != nil {
		return err
	}
	return r.events.Publish(ctx, user, st)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// drive runs (or resumes) the active turn of a mission while this replica
// holds its lease.
func (r *Runner) drive(base context.Context, id string) {
	log := r.log.With("mission_id", id)
	run, err := r.control.Run(base, id)
	if err != nil || run == nil {
		if err != nil {
			log.Error("cannot load run", "error", err.Error())
		}
		return
	}
	m, err := r.missions.Load(base, id)
	if err != nil {
		log.Error("cannot load mission of run", "error", err.Error())
		return
	}
	ctx, stop := context.WithCancel(base)
	defer stop()
	t := &turn{r: r, run: run, m: m, ops: r.workspaces.As(m.UserID), skip: run.Emitted, log: log.With("turn_id", run.TurnID),
		done: make(chan struct{}), fence: events.Fence{LeaseKey: control.LeaseKey(id), Owner: r.opts.Owner, RunKey: control.RunKey(id)}}
	leaseLost := make(chan struct{})
	go t.keepLease(ctx, stop, leaseLost)

	err = t.execute(ctx)
	close(t.done)
	switch {
	case errors.Is(err, events.ErrLeaseLost) || isClosed(leaseLost):
		log.Warn("lost the run's lease; another replica drives it now")
		return
	case base.Err() != nil:
		// Shutdown: the process keeps running; let another replica (or
		// this one after its restart) take over at once.
		_ = r.control.Release(context.WithoutCancel(base), id, r.opts.Owner)
		log.Info("released run for another replica")
		return
	case redisconn.IsOOM(err):
		// Redis is full: the turn's events cannot be stored. The agent's
		// output stays in the workspace; once Redis has room a replica
		// adopts the run (taking its lease is a write, so none can
		// before) and stores exactly the events not stored yet.
		log.Warn("redis is full: the turn waits until it has room", "error", err.Error())
		return
	case err != nil:
		log.Error("turn failed to run", "error", err.Error())
		// Leave the run: the lease expires and the turn is retried by
		// whoever adopts it (a Redis or operator outage is transient).
		return
	}
	if err := r.control.Finish(ctx, run.UserID, id, r.opts.Owner); err != nil {
		log.Warn("cannot finish run", "error", err.Error())
		return
	}
	if err := r.Kick(ctx, run.UserID); err != nil {
		log.Warn("cannot start queued messages", "error", err.Error())
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// turn is one drive of a run.
type turn struct {
	r     *Runner
	run   *control.Run
	m     *missions.Mission
	log   *slog.Logger
	fence events.Fence
	skip  int64
	// ops is the operator as the mission's owner: every call of the turn
	// goes through it.
	ops  *workspaces.User
	ws   *workspaces.Workspace
	pid  string
	done chan struct{}

	cancelOnce sync.Once
	// stopLoop cancels the built-in backend's loop (its "process").
	mu       sync.Mutex
	stopLoop context.CancelFunc

	creds map[string]string // provider → secret, for this turn
}

func (t *turn) setStopLoop(f context.CancelFunc) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopLoop = f
}

func (t *turn) loopStopper() context.CancelFunc {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopLoop
}

// keepLease renews the lease until ctx ends; it stops the drive when the
// lease is lost and starts the cancel escalation when a cancel is flagged.
func (t *turn) keepLease(ctx context.Context, stop context.CancelFunc, lost chan struct{}) {
	every := max(t.r.opts.LeaseTTL/3, 50*time.Millisecond)
	every = min(every, time.Second) // cancel latency
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.done:
			return
		case <-tick.C:
		}
		cancel, err := t.r.control.Renew(ctx, t.run.MissionID, t.r.opts.Owner, t.r.opts.LeaseTTL)
		if errors.Is(err, control.ErrLeaseLost) {
			close(lost)
			stop()
			return
		}
		if err != nil {
			continue // transient; the lease outlives a few misses
		}
		if cancel {
			t.cancelOnce.Do(func() { go t.escalate(ctx) })
		}
	}
}

// escalate stops the CLI: SIGINT (the CLIs' own interrupt), then SIGTERM,
// then SIGKILL, each to the process group, with a grace period between.
func (t *turn) escalate(ctx context.Context) {
	if t.m.Backend == openai.Name {
		// The built-in loop runs here: stopping it is immediate.
		for t.loopStopper() == nil {
			select {
			case <-time.After(100 * time.Millisecond):
			case <-t.done:
				return
			case <-ctx.Done():
				return
			}
		}
		t.loopStopper()()
		t.log.Info("cancel: stopped the built-in agent loop")
		return
	}
	for _, sig := range []string{"INT", "TERM", "KILL"} {
		if t.pid == "" || t.ws == nil {
			// Not started yet: try again shortly.
			select {
			case <-time.After(100 * time.Millisecond):
				continue
			case <-t.done:
				return
			}
		}
		if err := t.ops.Signal(ctx, t.ws.ID, t.pid, sig); err != nil {
			t.log.Debug("signal", "signal", sig, "error", err.Error())
		}
		t.log.Info("cancel: signalled the agent", "signal", sig)
		select {
		case <-t.done:
			return
		case <-ctx.Done():
			return
		case <-time.After(t.r.opts.CancelGrace):
		}
	}
}

// emit stores e as the next event of the turn, unless an earlier drive
// already stored it.
func (t *turn) emit(ctx context.Context, e event.Event, offset int64) error {
	if t.skip > 0 {
		t.skip--
		return nil
	}
	e.MissionID = t.m.ID
	if e.Kind == event.KindAssistantMessage && e.ID == "" {
		e.ID = t.run.AssistantID
	}
	f := t.fence
	f.Offset = offset
	_, _, err := t.r.events.Append(ctx, e, events.AppendOptions{UserID: t.run.UserID, TurnID: t.run.TurnID, Fence: &f})
	return err
}

// processID is the operator process id of a turn (deterministic, so a
// takeover finds the process).
func processID(turnID string) string { return "mc-" + turnID }

func (t *turn) execute(ctx context.Context) error {
	msg := t.run.Message
	// Before the process: the same events on every drive, so skipping
	// counts them too.
	if msg.Queued {
		if err := t.emit(ctx, event.Event{Kind: event.KindUserMessage, ID: msg.ID, Content: msg.Content}, 0); err != nil {
			return err
		}
	}
	if _, err := t.r.missions.Update(ctx, t.m.ID, func(m *missions.Mission) error {
		m.Status, m.TerminalReason, m.InterruptedAt = missions.Active, "", nil
		return nil
	}); err != nil {
		return err
	}
	if err := t.emit(ctx, event.Event{Kind: event.KindMissionStatusChanged, Status: string(missions.Active)}, 0); err != nil {
		return err
	}
	if err := t.r.Snapshot(ctx, t.run.UserID); err != nil {
		t.log.Warn("cannot publish status", "error", err.Error())
	}

	ws, err := t.ops.Get(ctx, t.m.WorkspaceID)
	var ie *workspaces.IdentityError
	switch {
	case errors.Is(err, workspaces.ErrNotFound):
		return t.fail(ctx, fmt.Sprintf("The mission's workspace %s no longer exists (or is no longer yours); missions never run in another workspace. Create a new mission in one of your workspaces.", t.m.WorkspaceID), "workspace_gone", missions.Failed)
	case errors.As(err, &ie) && ie.Refused:
		return t.fail(ctx, "The mission cannot act for its owner: the auth service refused a token for them ("+ie.Err.Error()+").", "identity_refused", missions.Failed)
	case err != nil:
		return fmt.Errorf("look up workspace: %w", err)
	case !ws.UsableBy(t.m.UserID):
		return t.fail(ctx, fmt.Sprintf("The mission's workspace %s belongs to another user; a mission runs only in its owner's workspaces.", ws.Name), "workspace_forbidden", missions.Failed)
	}
	if ws.Status != "ready" {
		return t.fail(ctx, fmt.Sprintf("The mission's workspace %s is not ready (status %s).", ws.Name, ws.Status), "workspace_not_ready", missions.Failed)
	}
	t.ws = ws

	dir := path.Join(ws.Path, "missions", t.m.ID)
	req := backend.Request{
		Executable: t.r.opts.CLIs[t.m.Backend],
		Prompt:     msg.Content,
		Model:      deref(t.m.ModelOverride),
		Effort:     backend.Effort(deref(t.m.ModelEffort)),
		Agent:      deref(t.m.Agent),
		WorkDir:    dir,
		Home:       dir + "/.home",
	}
	if msg.Agent != nil && *msg.Agent != "" {
		req.Agent = *msg.Agent
	}
	if t.m.Backend == openai.Name {
		// The endpoint's key stays in mission-control (executeLoop).
		return t.executeLoop(ctx, ws, req)
	}
	// Only the one credential this backend (and model) needs, only in the
	// process's environment; a takeover starts nothing, so needs none.
	if !t.run.Started {
		has := func(p string) bool { return t.credential(ctx, p) != "" }
		if p := providerFor(t.m.Backend, req.Model, has); p != "" {
			req.Credentials = credentialEnv(t.m.Backend, p, t.credential(ctx, p))
		}
	}
	if t.m.SessionStarted && t.m.SessionID != "" {
		req.Resume = t.m.SessionID
	} else if t.m.Backend == "claudecode" {
		req.NewSessionID = t.m.SessionID
	}
	cmd, p, err := build(t.m.Backend, req, backend.ParserOptions{RunID: t.run.TurnID[:8], Model: req.Model, TextLimit: t.r.opts.FieldLimit})
	if err != nil {
		return t.fail(ctx, fmt.Sprintf("Cannot run the %s backend: %v", t.m.Backend, err), "bad_request", missions.Failed)
	}
	t.pid = processID(t.run.TurnID)

	if !t.run.Started {
		if ok, err := t.prepareDir(ctx, req); !ok || err != nil {
			return err
		}
		_, err = t.ops.Start(ctx, ws.ID, workspaces.StartRequest{ID: t.pid, Argv: cmd.Argv, Cwd: cmd.Dir, Env: cmd.Env, Stdin: cmd.Stdin})
		if err != nil && !errors.Is(err, workspaces.ErrConflict) {
			var we *workspaces.Error
			if errors.As(err, &we) && we.Status < 500 {
				return t.fail(ctx, fmt.Sprintf("Cannot start %s in the workspace: %s", cmd.Argv[0], we.Message), "start_failed", missions.Failed)
			}
			return fmt.Errorf("start agent process: %w", err)
		}
		if err := t.r.control.MarkStarted(ctx, t.m.ID); err != nil {
			return err
		}
	} else if _, err := t.ops.Process(ctx, ws.ID, t.pid); errors.Is(err, workspaces.ErrNotFound) {
		return t.fail(ctx, "The agent process of this turn is gone (its workspace restarted?). Resume the mission to continue.", "process_lost", missions.Interrupted)
	} else if err != nil {
		return fmt.Errorf("look up agent process: %w", err)
	}

	exit, err := t.follow(ctx, p)
	if errors.Is(err, workspaces.ErrNotFound) {
		return t.fail(ctx, "The agent process of this turn is gone (its workspace restarted?). Resume the mission to continue.", "process_lost", missions.Interrupted)
	}
	if err != nil {
		return err
	}
	if err := t.conclude(ctx, p, exit); err != nil {
		return err
	}
	if err := t.ops.Delete(context.WithoutCancel(ctx), ws.ID, t.pid); err != nil {
		t.log.Debug("cannot delete the finished process", "error", err.Error())
	}
	return nil
}

// syncedDirs are where the operator puts the library's skills and tools in
// a workspace (relative to its root); a mission directory links to them so
// the CLIs, which look in their working directory, find them.
var syncedDirs = []string{".claude/skills", ".opencode/skill", ".opencode/tool", ".agents/skills"}

// agentName is what a library agent may be called (the library's rule).
var agentName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// prepareDir creates the mission's directory and home on the workspace
// volume, so the CLI's session files survive restarts and missions never
// share them; links the workspace's library skills and tools into it; and
// writes the mission's agent from the library where Claude Code and
// OpenCode load agents. It reports false when the turn failed because of it.
func (t *turn) prepareDir(ctx context.Context, req backend.Request) (bool, error) {
	var script strings.Builder
	fmt.Fprintf(&script, "set -e\nmkdir -p -- %s %s\ncd %s\n", shellQuote(req.WorkDir), shellQuote(req.Home), shellQuote(req.WorkDir))
	for _, d := range syncedDirs {
		src := shellQuote(path.Join(t.ws.Path, d))
		fmt.Fprintf(&script, "if [ -d %s ] && [ ! -e %s ] && [ ! -L %s ]; then mkdir -p %s && ln -s %s %s; fi\n",
			src, d, d, path.Dir(d), src, d)
	}
	var stdin string
	if req.Agent != "" && agentName.MatchString(req.Agent) && t.r.opts.Agents != nil {
		content, found, err := t.r.opts.Agents(ctx, req.Agent)
		switch {
		case err != nil:
			t.log.Warn("cannot read the mission's agent from the library; the CLI gets only its name", "agent", req.Agent, "error", err.Error())
		case found:
			stdin = content
			fmt.Fprintf(&script, "mkdir -p .claude/agents .opencode/agent\ncat > .claude/agents/%[1]s.md\ncp .claude/agents/%[1]s.md .opencode/agent/%[1]s.md\n", req.Agent)
		}
	}
	res, err := t.ops.Exec(ctx, t.ws.ID, script.String(), stdin)
	if err != nil {
		return false, fmt.Errorf("prepare mission directory: %w", err)
	}
	if res.ExitCode != 0 {
		return false, t.fail(ctx, fmt.Sprintf("Cannot create the mission directory %s: %s", req.WorkDir, strings.TrimSpace(res.Stderr)), "workspace_error", missions.Failed)
	}
	return true, nil
}

// finisher is what ends a turn: a CLI's parser, or the built-in loop.
type finisher interface {
	Finish(x backend.Exit) []event.Event
	Summary() backend.Summary
}

// conclude ends a turn whose agent has stopped: the final events, the
// mission's status and session, and the final status event.
func (t *turn) conclude(ctx context.Context, p finisher, exit backend.Exit) error {
	// Cancellation (and a watchdog's stop) is read from the run record,
	// not from memory, so a takeover finishes the turn the same way.
	if cur, err := t.r.control.Run(ctx, t.m.ID); err == nil && cur != nil {
		exit.Cancelled = exit.Cancelled || cur.Cancel
		if cur.StopCode != "" {
			exit.Cancelled, exit.Failure, exit.FailureCode = false, cur.StopMessage, cur.StopCode
		}
	}
	for _, e := range p.Finish(exit) {
		if err := t.emit(ctx, e, -1); err != nil {
			return err
		}
	}
	sum := p.Summary()
	status, reason := missions.Completed, "completed"
	switch {
	case sum.Outcome == backend.OutcomeFailed && exit.FailureCode != "":
		status, reason = missions.Failed, exit.FailureCode
	case sum.Outcome == backend.OutcomeCancelled:
		status, reason = missions.Failed, "cancelled"
	case sum.Outcome == backend.OutcomeFailed:
		status, reason = missions.Failed, "llm_error"
	}
	if _, err := t.r.missions.Update(ctx, t.m.ID, func(m *missions.Mission) error {
		m.Status, m.TerminalReason = status, reason
		// Resume only a session the CLI confirmed it has: a turn that
		// failed before the CLI started one (no credentials, a crash)
		// leaves nothing to resume, and --resume would fail every turn after.
		if sum.SessionID != "" {
			m.SessionID = sum.SessionID
			m.SessionStarted = true
		}
		return nil
	}); err != nil {
		return err
	}
	var summary string
	switch {
	case reason == "cancelled":
		summary = "Cancelled by user"
	case exit.FailureCode != "" && reason == exit.FailureCode:
		summary = exit.Failure
	}
	if err := t.emit(ctx, event.Event{Kind: event.KindMissionStatusChanged, Status: string(status), Summary: summary}, -1); err != nil {
		return err
	}
	t.log.Info("turn finished", "outcome", string(sum.Outcome), "reason", reason, "exit_code", exit.Code)
	return nil
}

// follow feeds the process output, line by line, to the parser until the
// process exits. No line is held whole past the line limit: a longer JSON
// line reaches the parser with its long strings cut, and a longer line that
// is not (or cannot be kept as) JSON is reported as an error event, its
// start kept as noise, and the run goes on.
func (t *turn) follow(ctx context.Context, p parser) (backend.Exit, error) {
	// The parsers' emitter already follows each tool_call with its
	// mission_activity.
	lines := backend.NewLines(t.r.opts.LineLimit, t.r.opts.FieldLimit, func(l backend.Line) error {
		if l.Lost {
			msg := fmt.Sprintf("The %s agent printed a line of %d bytes that is not JSON, or is too large to keep even with its strings cut (the limit is %d bytes); it was dropped and the turn goes on.", t.m.Backend, l.Size, t.r.opts.LineLimit)
			if err := t.emit(ctx, event.Event{Kind: event.KindError, Message: msg, Code: "output_line_too_long"}, l.End); err != nil {
				return err
			}
		}
		for _, e := range p.Feed(l.Bytes) {
			if err := t.emit(ctx, e, l.End); err != nil {
				return err
			}
		}
		return nil
	})
	wd := backend.NewWatchdog(t.r.opts.StartupTimeout, t.r.opts.IdleTimeout, func(err error) { t.watchdogFired(ctx, err) })
	defer wd.Stop()
	for ev, err := range t.ops.Follow(ctx, t.ws.ID, t.pid, 0) {
		if err != nil {
			return backend.Exit{}, err
		}
		if !ev.EOF && len(ev.Bytes()) > 0 {
			wd.Activity()
		}
		if ev.EOF {
			if err := lines.Close(); err != nil {
				return backend.Exit{}, err
			}
			x := backend.Exit{Code: -1}
			if ev.ExitCode != nil {
				x.Code = *ev.ExitCode
			}
			return x, nil
		}
		if _, err := lines.Write(ev.Bytes()); err != nil {
			return backend.Exit{}, err
		}
	}
	return backend.Exit{}, ctx.Err()
}

// watchdogFired stops a CLI that printed nothing for too long: the reason
// goes into the run record (so a takeover ends the turn the same way) and
// the cancel escalation starts.
func (t *turn) watchdogFired(ctx context.Context, err error) {
	cli := t.m.Backend
	code, msg := "idle_timeout", fmt.Sprintf("The %s agent printed nothing for %v (idle timeout) and was stopped. Resume the mission to retry.", cli, t.r.opts.IdleTimeout)
	if errors.Is(err, backend.ErrStartupTimeout) {
		code, msg = "startup_timeout", fmt.Sprintf("The %s agent printed nothing within %v of its start (startup timeout) and was stopped. Resume the mission to retry.", cli, t.r.opts.StartupTimeout)
	}
	if ok, err := t.r.control.Stop(ctx, t.m.ID, code, msg); err != nil {
		t.log.Warn("watchdog: cannot record the stop", "error", err.Error())
	} else if !ok {
		return // cancelled already: that escalation runs
	}
	t.log.Warn("watchdog: stopping a silent agent", "reason", code)
	t.cancelOnce.Do(func() { go t.escalate(ctx) })
}

// fail ends the turn without (further) output from the CLI: a fatal error,
// a failed assistant_message and the final status.
func (t *turn) fail(ctx context.Context, msg, code string, status missions.Status) error {
	resumable := status == missions.Interrupted || status == missions.Failed
	evs := []event.Event{
		{Kind: event.KindError, Message: msg, Fatal: true, Code: code, Resumable: resumable},
		{Kind: event.KindAssistantMessage, Content: msg, Resumable: resumable},
	}
	for _, e := range evs {
		if err := t.emit(ctx, e, -1); err != nil {
			return err
		}
	}
	if _, err := t.r.missions.Update(ctx, t.m.ID, func(m *missions.Mission) error {
		m.Status, m.TerminalReason = status, code
		if status == missions.Interrupted {
			ts := time.Now().UTC().Format(time.RFC3339)
			m.InterruptedAt = &ts
		}
		return nil
	}); err != nil {
		return err
	}
	t.log.Warn("turn failed", "reason", code, "message", msg)
	return t.emit(ctx, event.Event{Kind: event.KindMissionStatusChanged, Status: string(status), Summary: msg}, -1)
}

// credential is the secret of provider the mission's owner runs with,
// looked up once per turn (an OAuth refresh happens at most once). Only
// the drive's goroutine calls it.
func (t *turn) credential(ctx context.Context, provider string) string {
	if v, ok := t.creds[provider]; ok {
		return v
	}
	v := t.r.opts.Credential(ctx, t.m.UserID, provider)
	if t.creds == nil {
		t.creds = map[string]string{}
	}
	t.creds[provider] = v
	return v
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
