package runner

import (
	"context"
	"fmt"
	"time"

	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/backend/openai"
	"sortie.dev/services/mission-control/internal/event"
	"sortie.dev/services/mission-control/internal/missions"
	"sortie.dev/services/mission-control/internal/workspaces"
)

// The built-in backend (openai) runs its agent loop here, in the driving
// replica, rather than as a process in the workspace; only its tools run
// there. A loop's state (the conversation of the turn so far, a model
// stream half read) dies with the replica, and the model's answers are not
// deterministic, so a takeover cannot re-feed and skip as it does for the
// CLIs.
//
// Failover (decision): the run is marked started before the loop's first
// model call. A replica that takes over a started built-in run (the driver
// died, lost its lease, or shut down) does not call the model again: it
// closes every tool call of the turn still without a result, and ends the
// turn `interrupted` (error `driver_lost`, resumable) unless the dead
// driver already stored the answer. Nothing is lost or duplicated, and a
// tool is never run twice; the user resumes the mission to continue, with
// the turn's messages in the history.

// historyLimit bounds the earlier messages sent with each model call.
const historyLimit = 100

// executeLoop runs a turn of the built-in backend.
func (t *turn) executeLoop(ctx context.Context, ws *workspaces.Workspace, req backend.Request) error {
	if t.run.Started {
		return t.abandonLoop(ctx)
	}
	hist, err := t.history(ctx)
	if err != nil {
		return err
	}
	if ok, err := t.prepareDir(ctx, req); !ok || err != nil {
		return err
	}
	cfg := t.r.opts.OpenAI
	if cfg.APIKey == "" {
		cfg.APIKey = t.credential(ctx, "openai")
	}
	cfg.Startup, cfg.Idle = t.r.opts.StartupTimeout, t.r.opts.IdleTimeout
	run, err := openai.NewRun(cfg, execIn{w: t.ops, id: ws.ID}, openai.Turn{Request: req, History: hist},
		backend.ParserOptions{RunID: t.run.TurnID[:8], TextLimit: t.r.opts.FieldLimit})
	if err != nil {
		return t.fail(ctx, fmt.Sprintf("Cannot run the %s backend: %v", openai.Name, err), "bad_request", missions.Failed)
	}
	if err := t.r.control.MarkStarted(ctx, t.m.ID); err != nil {
		return err
	}
	loopCtx, stop := context.WithCancel(ctx)
	defer stop()
	t.setStopLoop(stop)
	err = run.Drive(loopCtx, func(e event.Event) error { return t.emit(ctx, e, -1) })
	var exit backend.Exit
	switch {
	case err == nil:
	case ctx.Err() != nil:
		// Lease lost or shutdown: whoever takes the run over ends it.
		return ctx.Err()
	case loopCtx.Err() != nil:
		exit.Cancelled = true
	default:
		return err
	}
	return t.conclude(ctx, run, exit)
}

// history returns the mission's conversation before this turn: its last
// historyLimit messages.
func (t *turn) history(ctx context.Context) ([]openai.Message, error) {
	evs, err := t.r.events.Conversation(ctx, t.m.ID, historyLimit, func(e event.Event) bool {
		return e.Kind == event.KindUserMessage && e.ID == t.run.Message.ID // this turn's prompt; it goes last
	})
	if err != nil {
		return nil, fmt.Errorf("load history: %w", err)
	}
	out := make([]openai.Message, 0, len(evs))
	for _, e := range evs {
		role := "assistant"
		if e.Kind == event.KindUserMessage {
			role = "user"
		}
		out = append(out, openai.Message{Role: role, Content: e.Content})
	}
	return out, nil
}

// abandonLoop ends a built-in turn whose driver died mid-loop (see above).
func (t *turn) abandonLoop(ctx context.Context) error {
	// The prologue's events were skipped; from here on every event is new.
	t.skip = 0
	evs, err := t.turnEvents(ctx)
	if err != nil {
		return err
	}
	var (
		open     []event.Event
		answer   *event.Event
		finalled bool
	)
	results := map[string]bool{}
	for _, e := range evs {
		if e.Kind == event.KindToolResult {
			results[e.ToolCallID] = true
		}
	}
	for i, e := range evs {
		switch {
		case e.Kind == event.KindToolCall && !results[e.ToolCallID]:
			open = append(open, e)
		case e.Kind == event.KindAssistantMessage:
			answer = &evs[i]
		case e.Kind == event.KindMissionStatusChanged && answer != nil && e.Status != string(missions.Active):
			finalled = true
		}
	}
	for _, c := range open {
		e := event.Event{Kind: event.KindToolResult, ToolCallID: c.ToolCallID, ToolName: c.ToolName, IsError: true,
			Result: backend.String("the tool's result is unknown: the mission-control replica driving the turn stopped")}
		if err := t.emit(ctx, e, -1); err != nil {
			return err
		}
	}
	t.log.Warn("took over a built-in turn whose driver stopped", "open_tool_calls", len(open), "answered", answer != nil)
	switch {
	case answer == nil:
		return t.fail(ctx, "The mission-control replica running this turn's agent loop stopped mid-turn, so the turn was interrupted. Resume the mission to continue.", "driver_lost", missions.Interrupted)
	case finalled:
		return nil
	}
	status, reason := missions.Completed, "completed"
	if !answer.Success {
		status, reason = missions.Failed, "driver_lost"
	}
	if _, err := t.r.missions.Update(ctx, t.m.ID, func(m *missions.Mission) error {
		m.Status, m.TerminalReason = status, reason
		return nil
	}); err != nil {
		return err
	}
	return t.emit(ctx, event.Event{Kind: event.KindMissionStatusChanged, Status: string(status)}, -1)
}

// turnEvents returns the stored events of the current turn. A turn stores
// at most run.Emitted rows (text deltas share one), so they are among the
// last Emitted rows of the mission's log, after the turn's user_message.
func (t *turn) turnEvents(ctx context.Context) ([]event.Event, error) {
	n, err := t.r.events.Count(ctx, t.m.ID)
	if err != nil {
		return nil, err
	}
	window := min(t.run.Emitted+1, n)
	evs, err := t.r.events.Replay(ctx, t.m.ID, nil, int(window), int(n-window))
	if err != nil {
		return nil, err
	}
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Kind == event.KindUserMessage && evs[i].ID == t.run.Message.ID {
			return evs[i+1:], nil
		}
	}
	return evs, nil
}

// execIn runs the built-in backend's tools through the operator's exec API.
type execIn struct {
	w  *workspaces.User
	id string
}

func (x execIn) Exec(ctx context.Context, req openai.ExecRequest) (openai.ExecResult, error) {
	secs := int((req.Timeout + time.Second - 1) / time.Second)
	res, err := x.w.ExecWith(ctx, x.id, workspaces.ExecRequest{
		Command: req.Command, Cwd: req.Dir, Env: req.Env, Stdin: req.Stdin, TimeoutSecs: min(max(secs, 1), 600),
	})
	if err != nil {
		return openai.ExecResult{}, err
	}
	return openai.ExecResult{
		ExitCode: res.ExitCode, Stdout: res.Stdout, Stderr: res.Stderr, TimedOut: res.TimedOut,
		Truncated: res.StdoutTruncated || res.StderrTruncated,
	}, nil
}
