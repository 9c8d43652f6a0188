package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"sortie.dev/services/kit/testbin"
	"sortie.dev/services/kit/testwait"
)

const defaultWS = "00000000-0000-0000-0000-000000000000"

// cliDir is where the scripted stand-ins for the agent CLIs are installed
// in the host runtime; mission-control is started pointing at them.
const cliDir = "/tmp/e2e-bin"

func cliEnv() []string {
	return []string{
		"SORTIE_MC_CLI_CLAUDECODE=" + cliDir + "/claude", "SORTIE_MC_CLI_CODEX=" + cliDir + "/codex",
		"SORTIE_MC_CLI_OPENCODE=" + cliDir + "/opencode", "SORTIE_MC_CLI_AMP=" + cliDir + "/amp",
		// A killed mission-control's runs are taken over quickly.
		"SORTIE_MC_LEASE_TTL=3s", "SORTIE_MC_CANCEL_GRACE=1s",
		// The stand-ins check for credentials as the real CLIs do.
		"SORTIE_MC_ANTHROPIC_API_KEY=sk-ant-e2e-not-a-real-key", "SORTIE_MC_OPENAI_API_KEY=sk-e2e-not-a-real-key",
		"SORTIE_MC_AMP_API_KEY=amp-e2e-not-a-real-key",
	}
}

// installed remembers, per user, whether the CLIs are in that user's
// default workspace: in multi-user mode each user's default workspace is
// in a host runtime of its own.
var installed sync.Map // username -> *installation

type installation struct {
	once   sync.Once
	failed string
}

// installCLIs puts the fake agent (one static binary that speaks each
// CLI's wire format, chosen by its name) into u's default workspace
// through the exec API, as a user with only the API would; once per user.
func installCLIs(t *testing.T, u *user) {
	t.Helper()
	v, _ := installed.LoadOrStore(u.name, &installation{})
	in := v.(*installation)
	in.once.Do(func() { in.failed = u.installCLIs() })
	if in.failed != "" {
		t.Fatal(in.failed)
	}
}

func (u *user) installCLIs() (failed string) {
	u.waitStatus(defaultWS, "ready")
	raw, err := os.ReadFile(testbin.Path(u.t, "fake-agent"))
	if err != nil {
		return err.Error()
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	u.exec(defaultWS, map[string]any{"command": "rm -rf " + cliDir + " && mkdir -p " + cliDir})
	const chunk = 700_000 // a multiple of 4: each part decodes on its own
	for i := 0; i < len(enc); i += chunk {
		if r := u.exec(defaultWS, map[string]any{"command": "base64 -d >> " + cliDir + "/claude", "stdin": enc[i:min(i+chunk, len(enc))]}); r.ExitCode != 0 {
			return "upload: " + r.Stderr
		}
	}
	r := u.exec(defaultWS, map[string]any{"command": "cd " + cliDir + " && chmod 755 claude && ln -sf claude codex && ln -sf claude opencode && ln -sf claude amp && wc -c < claude"})
	if strings.TrimSpace(r.Stdout) != fmt.Sprint(len(raw)) {
		return fmt.Sprintf("install: %+v (want %d bytes)", r, len(raw))
	}
	return ""
}

type mission struct {
	ID          string `json:"id"`
	Status      string `json:"status"`
	Backend     string `json:"backend"`
	WorkspaceID string `json:"workspace_id"`
	Resumable   bool   `json:"resumable"`
}

type storedEvent struct {
	Sequence   int64   `json:"sequence"`
	EventType  string  `json:"event_type"`
	ToolCallID *string `json:"tool_call_id"`
	Content    string  `json:"content"`
}

func (u *user) createMission(body map[string]any) mission {
	u.t.Helper()
	a := u.do("POST", "/api/control/missions", body)
	if a.status != 200 {
		u.t.Fatalf("create mission: %d %s", a.status, a.body)
	}
	var m mission
	a.decode(u.t, &m)
	return m
}

func (u *user) send(missionID, content string) (id string, queued bool) {
	u.t.Helper()
	a := u.do("POST", "/api/control/message", map[string]any{"content": content, "mission_id": missionID})
	if a.status != 200 {
		u.t.Fatalf("message: %d %s", a.status, a.body)
	}
	var r struct {
		ID     string `json:"id"`
		Queued bool   `json:"queued"`
	}
	a.decode(u.t, &r)
	return r.ID, r.Queued
}

func (u *user) events(missionID, query string) []storedEvent {
	u.t.Helper()
	var evs []storedEvent
	a := u.do("GET", "/api/control/missions/"+missionID+"/events"+query, nil)
	if a.status != 200 {
		u.t.Fatalf("events: %d %s", a.status, a.body)
	}
	a.decode(u.t, &evs)
	return evs
}

func count(evs []storedEvent, kind string) int {
	n := 0
	for _, e := range evs {
		if e.EventType == kind {
			n++
		}
	}
	return n
}

// waitAnswers waits until the mission has n answers and is no longer active.
func (u *user) waitAnswers(missionID string, n int) []storedEvent {
	u.t.Helper()
	var evs []storedEvent
	testwait.Eventually(u.t, 2*time.Minute, fmt.Sprintf("%d answers in mission %s", n, missionID), func() (bool, string) {
		evs = u.events(missionID, "")
		var m mission
		u.do("GET", "/api/control/missions/"+missionID, nil).decode(u.t, &m)
		return count(evs, "assistant_message") >= n && m.Status != "active", fmt.Sprintf("%d answers, status %s", count(evs, "assistant_message"), m.Status)
	})
	return evs
}

// sseEvent is one event of /api/control/stream.
type sseEvent struct {
	ID, Event string
	Data      map[string]any
}

// stream follows /api/control/stream like a browser EventSource: it
// reconnects with Last-Event-ID after a break and collects what it gets.
type stream struct {
	mu     sync.Mutex
	events []sseEvent
	cancel context.CancelFunc
	done   chan struct{}
	breaks int
}

func (u *user) follow(query string) *stream {
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		last := ""
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.base+"/api/control/stream"+query, nil)
			req.Header.Set("Authorization", "Bearer "+u.token)
			req.Header.Set("Accept", "text/event-stream")
			if last != "" {
				req.Header.Set("Last-Event-ID", last)
			}
			resp, err := http.DefaultClient.Do(req)
			if err == nil && resp.StatusCode == 200 {
				last = s.read(resp, last)
			}
			if resp != nil {
				resp.Body.Close()
			}
			s.mu.Lock()
			s.breaks++
			s.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *stream) read(resp *http.Response, last string) string {
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	var ev sseEvent
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Event != "" || data.Len() > 0 {
				_ = json.Unmarshal([]byte(data.String()), &ev.Data)
				s.mu.Lock()
				s.events = append(s.events, ev)
				s.mu.Unlock()
				if ev.ID != "" {
					last = ev.ID
				}
			}
			ev, data = sseEvent{}, strings.Builder{}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id:"):
			ev.ID = strings.TrimSpace(strings.TrimPrefix(line, "id:"))
		case strings.HasPrefix(line, "event:"):
			ev.Event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	return last
}

// connected waits for the status snapshot every new stream begins with:
// events published after it are the stream's to deliver.
func (s *stream) connected(t *testing.T) {
	t.Helper()
	testwait.Eventually(t, 30*time.Second, "the stream's status snapshot", func() (bool, string) {
		return s.seen("status") >= 1, "no snapshot yet"
	})
}

func (s *stream) stop() []sseEvent {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sseEvent(nil), s.events...)
}

func (s *stream) seen(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.events {
		if e.Event == kind {
			n++
		}
	}
	return n
}

// checkStream: ids never repeat (except the text_delta rows, which carry
// their turn's sequence) and each tool_result follows its tool_call.
func checkStream(t *testing.T, evs []sseEvent) {
	t.Helper()
	ids := map[string]int{}
	calls := map[string]bool{}
	for _, e := range evs {
		if e.ID != "" {
			ids[e.ID]++
			if ids[e.ID] > 1 {
				t.Errorf("SSE id %s (%s) delivered twice", e.ID, e.Event)
			}
		}
		id, _ := e.Data["tool_call_id"].(string)
		switch e.Event {
		case "tool_call":
			calls[id] = true
		case "tool_result":
			if !calls[id] {
				t.Errorf("tool_result %q before (or without) its tool_call", id)
			}
		}
	}
}

// TestMissionJourneys: per backend, a mission is created, answers a
// message and a queued second one by itself, streams its events in order
// over SSE, replays them with filters, is cancelled mid-turn, resumed, and
// deleted (409 while running).
func TestMissionJourneys(t *testing.T) {
	u := loggedIn(t)
	installCLIs(t, u)
	for _, backend := range []string{"claudecode", "codex", "opencode", "amp"} {
		t.Run(backend, func(t *testing.T) {
			u := loggedIn(t)
			m := u.createMission(map[string]any{"backend": backend, "workspace_id": defaultWS, "title": "e2e " + backend})
			if m.Status != "pending" || m.Backend != backend {
				t.Errorf("new mission: %+v", m)
			}
			s := u.follow("?mission_id=" + m.ID)
			s.connected(t)
			if _, queued := u.send(m.ID, "list the files"); queued {
				t.Error("the first message was queued")
			}
			if _, queued := u.send(m.ID, "and again"); !queued {
				t.Error("a message to a busy mission was not queued")
			}
			evs := u.waitAnswers(m.ID, 2)
			for i, e := range evs {
				if e.Sequence != int64(i+1) {
					t.Fatalf("stored sequences are not 1..n: %d at %d", e.Sequence, i)
				}
			}
			if count(evs, "tool_call") < 2 || count(evs, "tool_result") != count(evs, "tool_call") {
				t.Fatalf("tool events: %d calls, %d results; events:\n%s", count(evs, "tool_call"), count(evs, "tool_result"), describe(evs))
			}
			testwait.Eventually(t, 30*time.Second, "both answers on the stream", func() (bool, string) {
				return s.seen("assistant_message") >= 2, fmt.Sprint(s.seen("assistant_message"))
			})
			live := s.stop()
			checkStream(t, live)
			if live[0].Event != "status" {
				t.Errorf("the stream began with %q, want the status snapshot", live[0].Event)
			}

			// Replay with filters.
			calls := u.events(m.ID, "?types=tool_call&limit=1&offset=1")
			if len(calls) != 1 || calls[0].EventType != "tool_call" {
				t.Errorf("replay types/limit/offset: %+v", calls)
			}

			// Cancel a turn in the middle; delete is refused meanwhile.
			u.send(m.ID, "sleep 30 then list")
			testwait.Eventually(t, 30*time.Second, "the slow turn running", func() (bool, string) {
				var cur mission
				u.do("GET", "/api/control/missions/"+m.ID, nil).decode(t, &cur)
				return cur.Status == "active", cur.Status
			})
			if a := u.do("DELETE", "/api/control/missions/"+m.ID, nil); a.status != 409 {
				t.Errorf("delete while running: %d, want 409", a.status)
			}
			if a := u.do("POST", "/api/control/missions/"+m.ID+"/cancel", nil); a.status != 200 {
				t.Fatalf("cancel: %d %s", a.status, a.body)
			}
			evs = u.waitAnswers(m.ID, 3)
			if last := evs[len(evs)-1]; !strings.Contains(strings.Join(contents(evs, "assistant_message"), "|"), "Cancelled") {
				t.Errorf("the cancelled turn: last event %+v", last)
			}
			if a := u.do("POST", "/api/control/missions/"+m.ID+"/resume", nil); a.status != 200 {
				t.Errorf("resume: %d %s", a.status, a.body)
			}
			u.waitAnswers(m.ID, 4)
			if a := u.do("DELETE", "/api/control/missions/"+m.ID, nil); a.status != 200 {
				t.Errorf("delete: %d %s", a.status, a.body)
			}
		})
	}
}

func contents(evs []storedEvent, kind string) []string {
	var out []string
	for _, e := range evs {
		if e.EventType == kind {
			out = append(out, e.Content)
		}
	}
	return out
}

func describe(evs []storedEvent) string {
	var b strings.Builder
	for _, e := range evs {
		c := e.Content
		if len(c) > 200 {
			c = c[:200] + "..."
		}
		fmt.Fprintf(&b, "  %d %s %q\n", e.Sequence, e.EventType, c)
	}
	return b.String()
}

// Missions belong to their user: another user neither sees nor touches
// them, and their events never reach the other's stream.
func TestMissionsBelongToTheirUser(t *testing.T) {
	t.Parallel()
	alice, bob := loggedInAs(t, "alice"), loggedInAs(t, "bob")
	installCLIs(t, alice)
	m := alice.createMission(map[string]any{"backend": "amp", "workspace_id": defaultWS, "title": "alice's"})
	bobStream := bob.follow("")
	bobStream.connected(t)
	alice.send(m.ID, "list the files")
	alice.waitAnswers(m.ID, 1)
	for _, r := range []struct{ method, path string }{
		{"GET", "/api/control/missions/" + m.ID}, {"GET", "/api/control/missions/" + m.ID + "/events"},
		{"DELETE", "/api/control/missions/" + m.ID}, {"POST", "/api/control/missions/" + m.ID + "/load"},
	} {
		if a := bob.do(r.method, r.path, nil); a.status != 404 {
			t.Errorf("bob %s %s: %d, want 404", r.method, r.path, a.status)
		}
	}
	var list []mission
	bob.do("GET", "/api/control/missions", nil).decode(t, &list)
	for _, x := range list {
		if x.ID == m.ID {
			t.Error("alice's mission is in bob's list")
		}
	}
	for _, e := range bobStream.stop() {
		if id, _ := e.Data["mission_id"].(string); id == m.ID {
			t.Errorf("bob's stream carried alice's %s", e.Event)
		}
	}
}

// A mission's agent comes from the library, and its directory links the
// workspace's library skills, where the CLIs look for them.
func TestMissionGetsLibraryAgentAndSkills(t *testing.T) {
	t.Parallel()
	u := loggedIn(t)
	installCLIs(t, u)
	agent := map[string]string{"content": "---\ndescription: Reviews changes for the e2e tests\nmodel: sonnet\n---\nYou review diffs carefully.\n"}
	if a := u.do("PUT", "/api/library/agent/e2e-reviewer", agent); a.status != 200 {
		t.Fatalf("save an agent: %d %s", a.status, a.body)
	}
	if a := u.do("PUT", "/api/library/skill/e2e-mission-skill", map[string]string{"content": "---\nname: e2e-mission-skill\ndescription: for missions\n---\nUse me.\n"}); a.status != 200 {
		t.Fatalf("save a skill: %d %s", a.status, a.body)
	}
	if a := u.do("POST", "/api/workspaces/"+defaultWS+"/sync", nil); a.status != 200 {
		t.Fatalf("sync the default workspace: %d %s", a.status, a.body)
	}
	m := u.createMission(map[string]any{"backend": "claudecode", "workspace_id": defaultWS, "agent": "e2e-reviewer"})
	u.send(m.ID, "list the files")
	u.waitAnswers(m.ID, 1)
	dir := "/workspaces/missions/" + m.ID
	r := u.exec(defaultWS, map[string]any{"command": "cat .claude/agents/e2e-reviewer.md .opencode/agent/e2e-reviewer.md | grep -c 'review diffs'; cat .claude/skills/e2e-mission-skill/SKILL.md", "cwd": dir})
	if !strings.HasPrefix(r.Stdout, "2\n") || !strings.Contains(r.Stdout, "Use me.") {
		t.Errorf("in the mission directory: %+v", r)
	}
}

// The original project's own acceptance flow, as its clients drive it:
// create a mission, load it, open the stream, send two messages to the
// loaded mission (no mission_id), and see at least two answers with text
// deltas, thinking, and tool calls paired with their results.
func TestReferenceAcceptanceFlow(t *testing.T) {
	u := loggedInAs(t, "alice")
	installCLIs(t, u)
	m := u.createMission(map[string]any{"backend": "claudecode", "workspace_id": defaultWS})
	if a := u.do("POST", "/api/control/missions/"+m.ID+"/load", nil); a.status != 200 {
		t.Fatalf("load: %d %s", a.status, a.body)
	}
	s := u.follow("")
	s.connected(t)
	for _, text := range []string{"What is in this directory?", "And now?"} {
		a := u.do("POST", "/api/control/message", map[string]any{"content": text})
		if a.status != 200 {
			t.Fatalf("message to the loaded mission: %d %s", a.status, a.body)
		}
	}
	testwait.Eventually(t, 2*time.Minute, "two answers on the stream", func() (bool, string) {
		return s.seen("assistant_message") >= 2, fmt.Sprint(s.seen("assistant_message"))
	})
	live := s.stop()
	checkStream(t, live)
	for _, kind := range []string{"text_delta", "thinking", "tool_call", "tool_result", "user_message"} {
		if countSSE(live, kind) == 0 {
			t.Errorf("no %s on the stream", kind)
		}
	}
	if got := u.events(m.ID, "?types=assistant_message"); len(got) < 2 {
		t.Errorf("the loaded mission has %d answers, want 2: the messages went elsewhere", len(got))
	}
}
