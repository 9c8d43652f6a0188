package service

import (
	"strings"
	"testing"
	"time"

	"sortie.dev/services/kit/redistest"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/mission-control/internal/backend/openai/openaitest"
)

// The built-in backend's loop runs inside mission-control; only its tools
// go to the workspace. These tests drive it through the HTTP API on a real
// Redis against a scripted chat-completions endpoint; the workspace is the
// stand-in of harness_test.go, whose exec succeeds with no output (the
// tools run for real on the node in TestOnNode).

func openaiEnv(ep *openaitest.Endpoint, extra map[string]string) map[string]string {
	env := map[string]string{"SORTIE_MC_OPENAI_BASE_URL": ep.URL, "SORTIE_MC_OPENAI_MODEL": "test-default"}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

func terminalReason(t testing.TB, e *env, id string) string {
	t.Helper()
	var m struct {
		TerminalReason string `json:"terminal_reason"`
	}
	e.do("GET", "/api/control/missions/"+id, nil).Decode(t, &m)
	return m.TerminalReason
}

// lsThenAnswer is a turn that lists the files, then answers.
func lsThenAnswer(answer string) []openaitest.Reply {
	return []openaitest.Reply{
		{Chunks: []string{openaitest.Content("Listing."), openaitest.CallStart(0, "call_1", "shell"),
			openaitest.CallArgs(0, `{"command":`), openaitest.CallArgs(0, `"ls"}`), openaitest.Finish("tool_calls"), openaitest.Usage(50, 5, 0, 0)}},
		{Chunks: []string{openaitest.Content(answer), openaitest.Finish("stop"), openaitest.Usage(80, 9, 0, 0)}},
	}
}

func TestBuiltinBackend(t *testing.T) {
	ep := openaitest.New(t, lsThenAnswer("First answer.")...)
	e := start(t, options{env: openaiEnv(ep, nil)})
	m := e.create(t, map[string]any{"backend": "openai", "model_effort": "low"})
	e.send(t, m.ID, "Please list the files.")
	if got := e.waitStatus(t, m.ID, "completed", "failed"); got.Status != "completed" {
		t.Fatalf("status %s; %v", got.Status, kinds(e.events(t, m.ID)))
	}
	evs := e.events(t, m.ID)
	checkTurns(t, evs, 1)
	want := []string{"user_message", "mission_status_changed", "text_delta", "tool_call", "mission_activity", "tool_result", "assistant_message", "mission_status_changed"}
	if got := kinds(evs); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("events %v, want %v", got, want)
	}
	am := evs[len(evs)-2]
	if am.Content != "First answer." {
		t.Errorf("answer %q", am.Content)
	}
	if u, _ := am.Metadata["usage"].(map[string]any); u["input_tokens"] != float64(130) {
		t.Errorf("usage %v", am.Metadata["usage"])
	}
	req := ep.Requests()[0]
	if req["model"] != "test-default" || req["reasoning_effort"] != "low" || ep.Auth()[0] != "Bearer sk-test" {
		t.Errorf("request model %v effort %v auth %q", req["model"], req["reasoning_effort"], ep.Auth()[0])
	}

	// The next turn sends the conversation so far and the mission's model.
	ep.Add(openaitest.Reply{Chunks: []string{openaitest.Content("Second."), openaitest.Finish("stop")}})
	e.send(t, m.ID, "And again.")
	if got := e.waitTurns(t, m.ID, 2); got.Status != "completed" {
		t.Fatalf("second turn: %s", got.Status)
	}
	msgs := ep.Requests()[2]["messages"].([]any)
	var roles []string
	for _, mm := range msgs {
		roles = append(roles, mm.(map[string]any)["role"].(string))
	}
	if strings.Join(roles, ",") != "system,user,assistant,user" || msgs[2].(map[string]any)["content"] != "First answer." {
		t.Errorf("second turn's messages: %v", msgs)
	}
}

func TestBuiltinBackendCancelMidStream(t *testing.T) {
	ep := openaitest.New(t, openaitest.Reply{Chunks: []string{openaitest.Content("Thinking about it"), openaitest.Content("...")}, HangAfter: 1})
	e := start(t, options{env: openaiEnv(ep, nil)})
	m := e.create(t, map[string]any{"backend": "openai"})
	e.send(t, m.ID, "Take your time.")
	testwait.For(t, time.Minute, "a text_delta event is stored", func() (int, bool) { n := count(e.events(t, m.ID), "text_delta"); return n, n > 0 })
	start := time.Now()
	if r := e.do("POST", "/api/control/missions/"+m.ID+"/cancel", nil); r.Status != 200 {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	got := e.waitStatus(t, m.ID, "failed", "completed")
	t.Logf("cancelled in %v", time.Since(start).Round(time.Millisecond))
	evs := e.events(t, m.ID)
	checkTurns(t, evs, 1)
	if am := evs[len(evs)-2]; got.Status != "failed" || !got.Resumable || am.Content != "Cancelled" {
		t.Errorf("after cancel: %s resumable %v; %v", got.Status, got.Resumable, kinds(evs))
	}
	if terminalReason(t, e, m.ID) != "cancelled" {
		t.Errorf("terminal_reason %q", terminalReason(t, e, m.ID))
	}
}

func TestBuiltinBackendWatchdog(t *testing.T) {
	ep := openaitest.New(t, openaitest.Reply{HangAfter: -1})
	e := start(t, options{env: openaiEnv(ep, map[string]string{"SORTIE_MC_STARTUP_TIMEOUT": "500ms"})})
	m := e.create(t, map[string]any{"backend": "openai"})
	e.send(t, m.ID, "Hello?")
	got := e.waitStatus(t, m.ID, "failed", "completed")
	evs := e.events(t, m.ID)
	var msg string
	for _, ev := range evs {
		if ev.EventType == "error" {
			msg = ev.Content
		}
	}
	if got.Status != "failed" || !got.Resumable || !strings.Contains(msg, "startup timeout") {
		t.Errorf("status %s resumable %v error %q", got.Status, got.Resumable, msg)
	}
	checkTurns(t, evs, 1)
}

// TestBuiltinBackendFailover stops the replica driving a built-in turn in
// the middle of a model stream. Another replica takes the run over and ends
// it interrupted (the loop's state died with the driver): every event once,
// the tool call closed, one answer; resuming runs a new turn.
func TestBuiltinBackendFailover(t *testing.T) {
	ep := openaitest.New(t, lsThenAnswer("unused")[0],
		openaitest.Reply{Chunks: []string{openaitest.Content("Half"), openaitest.Content("way")}, HangAfter: 1})
	rdb := redistest.Start(t)
	ws := fakeOperator(t)
	a := start(t, options{redis: rdb, workspaces: ws, env: openaiEnv(ep, map[string]string{"SORTIE_MC_REPLICA_ID": "a"})})
	m := a.create(t, map[string]any{"backend": "openai"})
	a.send(t, m.ID, "Work on it.")
	testwait.For(t, time.Minute, "the second model call", func() (int, bool) { n := len(ep.Requests()); return n, n == 2 })
	testwait.For(t, time.Minute, "a text_delta event is stored", func() (int, bool) { n := count(a.events(t, m.ID), "text_delta"); return n, n > 0 })
	before := kinds(a.events(t, m.ID))

	b := start(t, options{redis: rdb, workspaces: ws, env: openaiEnv(ep, map[string]string{"SORTIE_MC_REPLICA_ID": "b"})})
	a.shutdown() // releases the lease at once; a SIGKILL lets it expire
	got := b.waitStatus(t, m.ID, "interrupted", "failed", "completed")
	evs := b.events(t, m.ID)
	t.Logf("before the stop: %v; after: %v", before, kinds(evs))
	if reason := terminalReason(t, b, m.ID); got.Status != "interrupted" || !got.Resumable || reason != "driver_lost" {
		t.Fatalf("status %s resumable %v reason %q", got.Status, got.Resumable, reason)
	}
	checkTurns(t, evs, 1)
	for i, k := range before {
		if evs[i].EventType != k {
			t.Fatalf("event %d changed from %s to %s", i, k, evs[i].EventType)
		}
	}
	if n := len(ep.Requests()); n != 2 {
		t.Errorf("%d model calls: the takeover must not call the model again", n)
	}

	ep.Add(openaitest.Reply{Chunks: []string{openaitest.Content("Resumed and done."), openaitest.Finish("stop")}})
	var rm mission
	b.do("POST", "/api/control/missions/"+m.ID+"/resume", nil).Decode(t, &rm)
	if got := b.waitTurns(t, m.ID, 2); got.Status != "completed" {
		t.Errorf("resumed turn: %s; %v", got.Status, kinds(b.events(t, m.ID)))
	}
	checkTurns(t, b.events(t, m.ID), 2)
}
