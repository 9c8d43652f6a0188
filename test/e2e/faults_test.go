package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"sortie.dev/services/kit/testwait"
)

// The platform's ports, as TestMain gave them to hack/run.sh.
func (p *platform) port(service string) int {
	base := p.base
	switch service {
	case "redis":
		return base + 1
	case "auth":
		return base + 2
	case "workspace-operator":
		return base + 3
	case "library":
		return base + 4
	case "mission-control":
		return base + 5
	}
	return base
}

var ssPID = regexp.MustCompile(`pid=(\d+)`)

// pidOn finds the process listening on a port of this platform.
func pidOn(t *testing.T, port int) int {
	t.Helper()
	out, err := exec.Command("ss", "-ltnpH", fmt.Sprintf("sport = :%d", port)).Output()
	if err != nil {
		t.Fatalf("ss: %v", err)
	}
	m := ssPID.FindSubmatch(out)
	if m == nil {
		t.Fatalf("nothing listens on port %d: %s", port, out)
	}
	pid, _ := strconv.Atoi(string(m[1]))
	return pid
}

// crash kills a service of the platform; make run's launcher starts it again.
func crash(t *testing.T, service string, sig syscall.Signal) {
	t.Helper()
	port := sortie.port(service)
	pid := pidOn(t, port)
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, time.Minute, service+" back after the crash", func() (bool, string) {
		out, _ := exec.Command("ss", "-ltnpH", fmt.Sprintf("sport = :%d", port)).Output()
		m := ssPID.FindSubmatch(out)
		return m != nil && string(m[1]) != strconv.Itoa(pid), string(out)
	})
}

// Kill mission-control in the middle of a turn: the launcher starts it
// again, it takes the run over, the turn completes, and an SSE client that
// reconnects with Last-Event-ID sees every event exactly once.
func TestKillMissionControlMidTurn(t *testing.T) {
	u := loggedIn(t)
	installCLIs(t, u)
	m := u.createMission(map[string]any{"backend": "claudecode", "workspace_id": defaultWS})
	s := u.follow("?mission_id=" + m.ID)
	s.connected(t)
	u.send(m.ID, "sleep 6 then list the files")
	testwait.Eventually(t, 30*time.Second, "the turn under way", func() (bool, string) {
		return s.seen("user_message") >= 1, fmt.Sprint(s.seen("user_message"))
	})
	crash(t, "mission-control", syscall.SIGKILL)
	evs := u.waitAnswers(m.ID, 1)
	for i, e := range evs {
		if e.Sequence != int64(i+1) {
			t.Fatalf("stored events after the takeover are not 1..n: %d at %d", e.Sequence, i)
		}
	}
	if count(evs, "assistant_message") != 1 || count(evs, "user_message") != 1 {
		t.Errorf("after the takeover: %d answers, %d user messages", count(evs, "assistant_message"), count(evs, "user_message"))
	}
	testwait.Eventually(t, 30*time.Second, "the answer on the reconnected stream", func() (bool, string) {
		return s.seen("assistant_message") == 1, fmt.Sprint(s.seen("assistant_message"))
	})
	live := s.stop()
	checkStream(t, live)
	if s.breaks < 1 {
		t.Error("the stream never broke: mission-control was not really killed")
	}
	for _, kind := range []string{"tool_call", "tool_result", "assistant_message"} {
		if got, want := countSSE(live, kind), count(evs, kind); got != want {
			t.Errorf("%s: %d on the stream, %d stored", kind, got, want)
		}
	}
}

func countSSE(evs []sseEvent, kind string) int {
	n := 0
	for _, e := range evs {
		if e.Event == kind {
			n++
		}
	}
	return n
}

// Restart the workspace-operator: no duplicate Pods, workspaces stay usable.
func TestRestartOperator(t *testing.T) {
	u := loggedIn(t)
	ws := u.createWorkspace(map[string]any{"name": "e2e-restart", "workspace_type": "container"})
	crash(t, "workspace-operator", syscall.SIGKILL) // mid-reconcile, most likely
	u.waitStatus(ws.ID, "ready")
	crash(t, "workspace-operator", syscall.SIGTERM)
	if r := u.exec(ws.ID, map[string]any{"command": "echo alive"}); r.Stdout != "alive\n" {
		t.Errorf("exec after restarts: %+v", r)
	}
	cs, err := kubernetes.NewForConfig(kubeConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	pods, err := cs.CoreV1().Pods(sortie.namespace).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	per := map[string]int{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			per[p.Labels["sortie.dev/workspace"]]++
		}
	}
	for w, n := range per {
		if n > 1 {
			t.Errorf("workspace %s has %d pods", w, n)
		}
	}
	u.do("DELETE", "/api/workspaces/"+ws.ID, nil)
}

// Restart Redis (append-only file on): logins, missions and their events
// are all still there.
func TestRestartRedis(t *testing.T) {
	u := loggedIn(t)
	installCLIs(t, u)
	m := u.createMission(map[string]any{"backend": "codex", "workspace_id": defaultWS, "title": "survives redis"})
	u.send(m.ID, "list the files")
	before := u.waitAnswers(m.ID, 1)

	crash(t, "redis", syscall.SIGKILL)
	var after []storedEvent
	testwait.Eventually(t, time.Minute, "mission-control answering again", func() (bool, string) {
		a := u.do("GET", "/api/control/missions/"+m.ID+"/events", nil)
		if a.status != 200 {
			return false, fmt.Sprint(a.status, " ", a.code())
		}
		a.decode(t, &after)
		return true, ""
	})
	// Nothing stored before the crash is lost or changed, and nothing is
	// stored twice. (The turn's last event may be stored a moment after the
	// mission stops being active, so after can hold one event more.)
	if len(after) < len(before) {
		t.Errorf("%d events before the restart, %d after: events were lost", len(before), len(after))
	}
	for i, e := range after {
		if e.Sequence != int64(i+1) {
			t.Fatalf("after the restart, event %d has sequence %d: a gap or a duplicate", i, e.Sequence)
		}
		if i < len(before) && (e.EventType != before[i].EventType || e.Content != before[i].Content) {
			t.Errorf("event %d changed across the restart: %s %q, was %s %q", e.Sequence, e.EventType, e.Content, before[i].EventType, before[i].Content)
		}
	}
	var got mission
	if a := u.do("GET", "/api/control/missions/"+m.ID, nil); a.status != 200 {
		t.Fatalf("the mission after the restart: %d", a.status)
	} else {
		a.decode(t, &got)
	}
	if got.ID != m.ID {
		t.Errorf("mission after restart: %+v", got)
	}
	// The token still works everywhere (revocation checks read Redis).
	if a := u.do("GET", "/api/workspaces", nil); a.status != 200 {
		t.Errorf("workspaces after the Redis restart: %d %s", a.status, a.body)
	}
	if a := u.do("GET", "/api/auth/verify", nil); a.status != 200 {
		t.Errorf("verify after the Redis restart: %d", a.status)
	}
	// And it keeps working: a new turn.
	u.send(m.ID, "once more")
	u.waitAnswers(m.ID, 2)
}
