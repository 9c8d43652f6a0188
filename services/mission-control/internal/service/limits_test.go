package service

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/redistest"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/mission-control/internal/event"
	"sortie.dev/services/mission-control/internal/events"
)

// The memory and storage bounds of issue 14, tried as an attacker would
// through the real API on a real Redis: each refusal is the right 4xx (or
// 503) with the error shape, and nothing stored changes.

// getStream opens an event stream and returns the response, whatever its
// status; the body is closed when the test ends.
func (e *env) getStream(t *testing.T, token string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", e.base+"/api/control/stream?token="+token, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func errorCode(t *testing.T, resp *http.Response) string {
	t.Helper()
	var body struct{ Error, Code string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Error == "" {
		t.Errorf("not the error shape: %v", err)
	}
	return body.Code
}

// One user past the stream cap is refused with 429 and Retry-After, on
// any replica (the count is in Redis); others are not affected; closing a
// stream gives its slot back.
func TestStreamCapPerUser(t *testing.T) {
	is := newIssuer(t)
	rs := redistest.Start(t)
	vars := is.authEnv(t)
	vars["SORTIE_MC_MAX_STREAMS_PER_USER"] = "3"
	a := start(t, options{redis: rs, env: vars})
	b := start(t, options{redis: rs, env: vars}) // a second replica
	alice, bob := is.sign(t, "alice", authn.RoleUser), is.sign(t, "bob", authn.RoleUser)
	var open []*http.Response
	for i, replica := range []*env{a, b, a} {
		resp := replica.getStream(t, alice)
		if resp.StatusCode != 200 {
			t.Fatalf("stream %d: %d", i, resp.StatusCode)
		}
		open = append(open, resp)
	}
	for _, replica := range []*env{a, b} {
		resp := replica.getStream(t, alice)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("a fourth stream: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
		if code := errorCode(t, resp); code != "too_many_streams" {
			t.Errorf("code %q", code)
		}
	}
	if resp := b.getStream(t, bob); resp.StatusCode != 200 {
		t.Errorf("bob's stream while alice is at the cap: %d", resp.StatusCode)
	}
	open[1].Body.Close()
	testwait.Eventually(t, 10*time.Second, "a stream of alice's again after closing one", func() (bool, string) {
		resp := a.getStream(t, alice)
		resp.Body.Close()
		return resp.StatusCode == 200, strconv.Itoa(resp.StatusCode)
	})
}

// limit parameters have maxima: above them they are clamped (clients of
// the original, which had none, keep working by paging), nonsense is 400.
func TestPagingLimits(t *testing.T) {
	e := start(t, options{env: map[string]string{"SORTIE_MC_EVENTS_PAGE_MAX": "1000"}})
	var m mission
	e.do("POST", "/api/control/missions", nil).Decode(t, &m)
	st := events.NewStore(e.redis.Client, 64<<10, 100000)
	for i := range 1500 {
		if _, _, err := st.Append(context.Background(), event.Event{Kind: event.KindError, MissionID: m.ID, Message: fmt.Sprint("e", i)}, events.AppendOptions{UserID: "dev"}); err != nil {
			t.Fatal(err)
		}
	}
	evPath := "/api/control/missions/" + m.ID + "/events"
	for _, tc := range []struct {
		query  string
		status int
		rows   int
	}{
		{"", 200, 1000},
		{"?limit=100000", 200, 1000},
		{"?limit=99999999999999999999", 200, 1000},
		{"?limit=1000&offset=1000", 200, 500},
		{"?limit=10&offset=99999999999999999999", 200, 0},
		{"?limit=7&types=error", 200, 7},
		{"?limit=0", 400, 0},
		{"?limit=-1", 400, 0},
		{"?limit=ten", 400, 0},
		{"?limit=1.5", 400, 0},
		{"?offset=-5", 400, 0},
		{"?types=bogus", 400, 0},
	} {
		t.Run(tc.query, func(t *testing.T) {
			r := e.do("GET", evPath+tc.query, nil)
			if r.Status != tc.status {
				t.Fatalf("%d %s", r.Status, r.Body)
			}
			if tc.status != 200 {
				wantError(t, r, 400, "bad_request")
				return
			}
			var rows []storedEvent
			r.Decode(t, &rows)
			if len(rows) != tc.rows {
				t.Errorf("%d rows, want %d", len(rows), tc.rows)
			}
		})
	}
	if r := e.do("GET", "/api/control/missions?limit=100000", nil); r.Status != 200 {
		t.Errorf("missions past the maximum: %d", r.Status)
	}
	wantError(t, e.do("GET", "/api/control/missions?limit=-3", nil), 400, "bad_request")
}

// busy makes a mission look like it runs a turn, so messages queue behind
// it (no replica drives it: it is not in the list of runs).
func busy(t *testing.T, e *env, mission string) {
	t.Helper()
	if err := e.redis.Client.HSet(context.Background(), "mc:m:{"+mission+"}:run", "turn", "t-busy", "user", "dev", "msg", "{}").Err(); err != nil {
		t.Fatal(err)
	}
}

// Messages are bounded in size, each mission's queue in length and a
// user's queues in bytes; a refused message stores nothing.
func TestMessageLimits(t *testing.T) {
	e := start(t, options{env: map[string]string{
		"SORTIE_MC_MAX_MESSAGE_BYTES": "4096", "SORTIE_MC_MAX_QUEUED_PER_MISSION": "3", "SORTIE_MC_MAX_QUEUED_BYTES_PER_USER": "8192",
	}})
	var m1, m2 mission
	e.do("POST", "/api/control/missions", nil).Decode(t, &m1)
	e.do("POST", "/api/control/missions", nil).Decode(t, &m2)
	busy(t, e, m1.ID)
	busy(t, e, m2.ID)
	msg := func(id, content string) response {
		return e.do("POST", "/api/control/message", map[string]any{"mission_id": id, "content": content})
	}

	before := redisState(t, e.redis)
	r := msg(m1.ID, strings.Repeat("x", 4097))
	wantError(t, r, http.StatusRequestEntityTooLarge, "message_too_large")
	if after := redisState(t, e.redis); after != before {
		t.Errorf("a refused message stored something:\n%s\n---\n%s", before, after)
	}

	for i := range 3 {
		if _, queued := e.send(t, m1.ID, fmt.Sprint("wait ", i)); !queued {
			t.Fatalf("message %d ran on a busy mission", i)
		}
	}
	before = redisState(t, e.redis)
	r = msg(m1.ID, "one too many")
	wantError(t, r, http.StatusTooManyRequests, "queue_full")
	if r.Header.Get("Retry-After") == "" {
		t.Error("queue_full without Retry-After")
	}
	if after := redisState(t, e.redis); after != before {
		t.Errorf("a message past the queue's length stored something:\n%s\n---\n%s", before, after)
	}

	// The user's queues hold at most 8 KiB: two messages of 3 KiB on the
	// other mission fill them.
	e.send(t, m2.ID, strings.Repeat("a", 3000))
	e.send(t, m2.ID, strings.Repeat("b", 3000))
	before = redisState(t, e.redis)
	wantError(t, msg(m2.ID, strings.Repeat("c", 3000)), http.StatusTooManyRequests, "queue_full")
	if after := redisState(t, e.redis); after != before {
		t.Error("a message past the user's queued bytes stored something")
	}
	// Clearing the queue makes room again.
	e.do("DELETE", "/api/control/queue", nil)
	e.send(t, m2.ID, strings.Repeat("c", 3000))
}

// fillRedis leaves Redis refusing every write that needs memory, as it
// does at maxmemory with noeviction, and returns how to give it room.
func fillRedis(t *testing.T, rs *redistest.Server) (room func()) {
	t.Helper()
	ctx := context.Background()
	if err := rs.Client.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := rs.Client.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// Redis full (maxmemory, noeviction): every write is 503 storage_full
// with Retry-After and changes nothing; reads go on; when there is room
// again everything is there and writes work.
func TestRedisFull(t *testing.T) {
	rs := redistest.Start(t, "--maxmemory-policy", "noeviction")
	e := start(t, options{redis: rs})
	var kept []mission
	for i := range 3 {
		kept = append(kept, e.create(t, map[string]any{"title": fmt.Sprint("kept ", i)}))
	}
	e.send(t, kept[0].ID, "hello")
	e.waitStatus(t, kept[0].ID, "failed", "completed") // the stand-in operator fails the start
	room := fillRedis(t, rs)
	before := redisState(t, rs)
	for _, tc := range []struct{ name, method, path, body string }{
		{"create", "POST", "/api/control/missions", `{"title":"more"}`},
		{"create empty", "POST", "/api/control/missions", ``},
		{"message", "POST", "/api/control/message", `{"content":"hi","mission_id":"` + kept[1].ID + `"}`},
		{"message to the current", "POST", "/api/control/message", `{"content":"hi"}`},
		{"status", "POST", "/api/control/missions/" + kept[1].ID + "/status", `{"status":"completed"}`},
		{"load", "POST", "/api/control/missions/" + kept[2].ID + "/load", ``},
		{"resume", "POST", "/api/control/missions/" + kept[0].ID + "/resume", `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.method, tc.path, tc.body)
			wantError(t, r, http.StatusServiceUnavailable, "storage_full")
			if r.Header.Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
		})
	}
	if after := redisState(t, rs); after != before {
		t.Errorf("refused writes changed Redis:\n%s\n---\n%s", before, after)
	}
	// Reads go on, a stream included.
	for _, path := range []string{"/api/control/missions", "/api/control/missions/" + kept[0].ID, "/api/control/missions/" + kept[0].ID + "/events",
		"/api/control/missions/current", "/api/control/queue", "/api/health"} {
		if r := e.do("GET", path, nil); r.Status != 200 {
			t.Errorf("GET %s while Redis is full: %d %s", path, r.Status, r.Body)
		}
	}
	if ev := e.openStream("/api/control/stream", "").next(t); ev.name != "status" {
		t.Errorf("stream while Redis is full: %+v", ev)
	}
	// Deleting makes room, and works while full.
	if r := e.do("DELETE", "/api/control/missions/"+kept[2].ID, nil); r.Status != 200 {
		t.Errorf("delete while Redis is full: %d %s", r.Status, r.Body)
	}
	room()
	e.create(t, map[string]any{"title": "room again"})
	for _, k := range kept[:2] {
		var got mission
		e.do("GET", "/api/control/missions/"+k.ID, nil).Decode(t, &got)
		if got.ID != k.ID || got.Title == nil || *got.Title != *k.Title {
			t.Errorf("mission %s after Redis was full: %+v", k.ID, got)
		}
	}
}

// The stand-in agent prints a tool call of 8 MB (eight times the line
// limit; the e2e suite and TestLines try 30 MB) on one line: the turn goes
// on, and the call is stored with its command cut to the text limit.
func TestHugeToolLineStoredCut(t *testing.T) {
	is := newIssuer(t)
	op := newTenantOperator(t, is)
	rs := redistest.Start(t)
	e := tenancyEnv(t, is, op, rs, nil).as(is.sign(t, "alice", authn.RoleUser))
	for _, backend := range []string{"claudecode", "codex"} {
		t.Run(backend, func(t *testing.T) {
			m := e.create(t, map[string]any{"backend": backend})
			e.send(t, m.ID, "huge 8")
			if got := e.waitStatus(t, m.ID, "completed", "failed"); got.Status != "completed" {
				t.Fatalf("the turn %s: %v", got.Status, kinds(e.events(t, m.ID)))
			}
			var call *storedEvent
			evs := e.events(t, m.ID)
			for i := range evs {
				if evs[i].EventType == "tool_call" {
					call = &evs[i]
				}
			}
			if call == nil {
				t.Fatalf("no tool_call in %v", kinds(evs))
			}
			var args map[string]any
			if err := json.Unmarshal([]byte(call.Content), &args); err != nil {
				t.Fatalf("args do not parse: %v", err)
			}
			cmd, _ := args["command"].(string)
			if len(call.Content) > 64<<10 || !strings.Contains(cmd, "[truncated ") || !strings.HasPrefix(strings.TrimPrefix(cmd, "bash -lc '"), "ls -a # xxx") {
				t.Errorf("stored args of %d bytes, command %.40q…%q", len(call.Content), cmd, cmd[max(len(cmd)-40, 0):])
			}
			if n := count(evs, "tool_result"); n != 1 {
				t.Errorf("%d tool results", n)
			}
		})
	}
}
