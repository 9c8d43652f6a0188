package e2e

import (
	"fmt"
	"testing"
	"time"

	"sortie.dev/services/kit/testwait"
)

// The journeys that depend on the front door, behind a real nginx set up
// like ingress-nginx's defaults (response buffering on): large answers,
// and SSE that reaches the client live rather than when a buffer fills.
func TestBehindNginx(t *testing.T) {
	u := loggedInVia(t, sortie.nginx)
	installCLIs(t, u)

	if r := u.exec(defaultWS, map[string]any{"command": "head -c 10485760 /dev/zero | tr '\\0' n"}); len(r.Stdout) != 10<<20 {
		t.Errorf("10 MB through nginx: %d bytes", len(r.Stdout))
	}
	if a := u.do("PUT", "/api/library/skill/e2e-nginx", map[string]string{"content": "---\nname: e2e-nginx\ndescription: via nginx\n---\nHi.\n"}); a.status != 200 {
		t.Errorf("save a skill through nginx: %d %s", a.status, a.body)
	}

	m := u.createMission(map[string]any{"backend": "opencode", "workspace_id": defaultWS})
	s := u.follow("?mission_id=" + m.ID)
	// The snapshot is a few hundred bytes: a buffering proxy would sit on
	// it until 4 KB arrived or the stream ended.
	s.connected(t)
	u.send(m.ID, "sleep 4 then list the files")
	start := time.Now()
	testwait.Eventually(t, 30*time.Second, "the user message live through nginx", func() (bool, string) {
		return s.seen("user_message") >= 1, fmt.Sprint(s.seen("user_message"))
	})
	if s.seen("assistant_message") != 0 {
		t.Errorf("the user message arrived only with the answer (%s): the stream was buffered", time.Since(start))
	}
	evs := u.waitAnswers(m.ID, 1)
	testwait.Eventually(t, 30*time.Second, "the answer through nginx", func() (bool, string) {
		return s.seen("assistant_message") == 1, fmt.Sprint(s.seen("assistant_message"))
	})
	live := s.stop()
	checkStream(t, live)
	if got, want := countSSE(live, "tool_call"), count(evs, "tool_call"); got != want {
		t.Errorf("%d tool calls on the stream through nginx, %d stored", got, want)
	}
}
