package e2e

// The platform under abuse: what one user, or someone with no account at
// all, can do to it from outside and from inside a workspace, and what must
// keep working for everyone else when they do.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sortie.dev/api"
	"sortie.dev/services/kit/clustertest"
	"sortie.dev/services/kit/openapitest"
	"sortie.dev/services/kit/testwait"
)

// userFrom is a caller whose connections come from ip (any 127.0.0.0/8
// address is this machine's loopback), so the platform sees a client
// address of its own: the way different people reach an ingress.
func userFrom(t *testing.T, ip string) *user {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 200}
	t.Cleanup(tr.CloseIdleConnections)
	return &user{t: t, base: sortie.url,
		http: openapitest.Load(t, api.OpenAPI).Client(t, &http.Client{Timeout: 2 * time.Minute, Transport: tr})}
}

// metric sums the samples of a Prometheus metric whose labels contain every
// one of match (e.g. `result="failure"`), from a service's /metrics.
func metric(t *testing.T, service, name string, match ...string) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", sortie.port(service)))
	if err != nil {
		t.Fatalf("%s metrics: %v", service, err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
lines:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, m := range match {
			if !strings.Contains(line, m) {
				continue lines
			}
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("%s: %q: %v", service, line, err)
		}
		sum += v
	}
	return sum
}

// tooMany checks an answer is the throttle's: 429, a Retry-After of whole
// seconds, and the JSON error.
func tooMany(t *testing.T, what string, a answer) {
	t.Helper()
	if a.status != http.StatusTooManyRequests {
		t.Fatalf("%s: %d %s, want 429", what, a.status, clip(a.body))
	}
	if s, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || s <= 0 {
		t.Errorf("%s: Retry-After %q, want whole seconds", what, a.header.Get("Retry-After"))
	}
	if a.code() == "" {
		t.Errorf("%s: no error code in %s", what, clip(a.body))
	}
}

// Someone without the secret cannot lock a service out: bad token requests
// naming mission-control are throttled where they come from, and the real
// mission-control still gets its tokens, from the same machine.
func TestServiceClientsCannotBeLockedOut(t *testing.T) {
	attacker := userFrom(t, "127.0.0.21")
	for i := range 6 {
		a := attacker.do("POST", "/api/auth/token", map[string]string{"grant_type": "client_credentials",
			"client_id": "mission-control", "client_secret": rand.Text()})
		if a.status != http.StatusUnauthorized && a.status != http.StatusTooManyRequests {
			t.Fatalf("bad token request %d: %d %s", i+1, a.status, clip(a.body))
		}
	}
	secret, err := os.ReadFile(filepath.Join(sortie.state, "auth", "clients", "mission-control"))
	if err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{"127.0.0.1", "127.0.0.21"} {
		a := userFrom(t, from).do("POST", "/api/auth/token", map[string]string{"grant_type": "client_credentials",
			"client_id": "mission-control", "client_secret": strings.TrimSpace(string(secret))})
		if a.status != http.StatusOK {
			t.Errorf("the real mission-control from %s after the attack: %d %s", from, a.status, clip(a.body))
		}
	}
	// And the platform's own calls go on: a mission runs (mission-control
	// calls the operator and the library with its service token).
	u := loggedIn(t)
	installCLIs(t, u)
	m := u.createMission(map[string]any{"backend": "codex", "workspace_id": defaultWS, "title": "after a token attack"})
	u.send(m.ID, "list the files")
	u.waitAnswers(m.ID, 1)
}

// Five bad logins from one address lock that address out of the account,
// not the account's owner on another address.
func TestLoginLockoutStaysWithTheAttacker(t *testing.T) {
	attacker := userFrom(t, "127.0.0.22")
	for i := range 5 {
		a := attacker.do("POST", "/api/auth/login", map[string]string{"username": "admin", "password": rand.Text()})
		if a.status != http.StatusUnauthorized {
			t.Fatalf("bad login %d: %d %s, want 401", i+1, a.status, clip(a.body))
		}
	}
	// The sixth try is refused before any password is checked, even the
	// right one: the address has had its guesses.
	tooMany(t, "a sixth login from the attacker's address", attacker.do("POST", "/api/auth/login",
		map[string]string{"username": "admin", "password": sortie.users["admin"]}))
	// A client-supplied X-Forwarded-For does not choose another key: only
	// the gateway in front is trusted to set it.
	spoof := userFrom(t, "127.0.0.22")
	spoof.http.Transport = headerTransport{base: spoof.http.Transport, set: map[string]string{"X-Forwarded-For": "10.9.8.7"}}
	tooMany(t, "a login from the attacker's address claiming another", spoof.do("POST", "/api/auth/login",
		map[string]string{"username": "admin", "password": sortie.users["admin"]}))

	owner := userFrom(t, "127.0.0.23")
	a := owner.do("POST", "/api/auth/login", map[string]string{"username": "admin", "password": sortie.users["admin"]})
	if a.status != http.StatusOK {
		t.Fatalf("the admin from another address: %d %s, want 200", a.status, clip(a.body))
	}
}

// headerTransport sets request headers, as a client forging them would.
type headerTransport struct {
	base http.RoundTripper
	set  map[string]string
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.set {
		r.Header.Set(k, v)
	}
	return h.base.RoundTrip(r)
}

// A concurrent burst gets no more guesses than a slow attacker: every try
// is counted before its password is checked.
func TestConcurrentLoginBurst(t *testing.T) {
	before := metric(t, "auth", "sortie_auth_logins_total", `result="failure"`)
	attacker := userFrom(t, "127.0.0.24")
	var wg sync.WaitGroup
	statuses := make([]int, 100)
	for i := range statuses {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", sortie.url+"/api/auth/login",
				strings.NewReader(fmt.Sprintf(`{"username":"bob","password":%q}`, rand.Text())))
			req.Header.Set("Content-Type", "application/json")
			resp, err := attacker.http.Do(req)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		})
	}
	wg.Wait()
	guesses := metric(t, "auth", "sortie_auth_logins_total", `result="failure"`) - before
	counts := map[int]int{}
	for _, s := range statuses {
		counts[s]++
	}
	if guesses > 5 || counts[http.StatusUnauthorized] > 5 {
		t.Errorf("100 concurrent bad logins: %v passwords checked and %v answers (status: count), want at most 5 checked", guesses, counts)
	}
	if counts[http.StatusTooManyRequests] < 95 {
		t.Errorf("100 concurrent bad logins: %v, want the rest refused with 429", counts)
	}
	// Bob, elsewhere, is not locked out.
	if a := userFrom(t, "127.0.0.25").do("POST", "/api/auth/login", map[string]string{"username": "bob", "password": sortie.users["bob"]}); a.status != 200 {
		t.Errorf("bob from his own address after the burst: %d %s", a.status, clip(a.body))
	}
}

// A workspace's user can make its init log and its command output huge;
// the operator (which also runs the controller, for everyone) streams and
// caps them instead of holding them.
func TestOperatorMemoryUnderLargeOutput(t *testing.T) {
	t.Parallel()
	u := loggedInAs(t, "alice")
	ws := u.createWorkspace(map[string]any{"name": "e2e-big-output", "workspace_type": "container", "distro": "debian-bookworm"})
	t.Cleanup(func() { u.do("DELETE", "/api/workspaces/"+ws.ID, nil) })
	u.waitStatus(ws.ID, "ready")

	rss := func() float64 { return metric(t, "workspace-operator", "process_resident_memory_bytes") }
	if rss() == 0 {
		t.Fatal("the operator publishes no process_resident_memory_bytes")
	}
	if r := u.exec(ws.ID, map[string]any{"command": "head -c 52428800 /dev/zero | tr '\\0' x > /workspace/.sortie/init.log && stat -c %s /workspace/.sortie/init.log"}); strings.TrimSpace(r.Stdout) != "52428800" {
		t.Fatalf("writing a 50 MB init.log: %+v", r)
	}
	before := rss()
	peak := before
	for range 3 {
		a := u.do("GET", "/api/workspaces/"+ws.ID+"/init-log", nil)
		if a.status != 200 {
			t.Fatalf("init-log of a 50 MB log: %d %s", a.status, clip(a.body))
		}
		if len(a.body) > 4<<20 {
			t.Errorf("init-log answered %d bytes for a 50 MB log: it must page", len(a.body))
		}
		peak = max(peak, rss())
		a = u.do("POST", "/api/workspaces/"+ws.ID+"/exec", map[string]any{"command": "head -c 10485760 /dev/urandom | base64 -w0"})
		if a.status != 200 {
			t.Fatalf("exec with 10 MB of output: %d %s", a.status, clip(a.body))
		}
		var r execResult
		a.decode(t, &r)
		if !r.StdoutTruncated {
			t.Errorf("10 MB of output came back whole (%d bytes), want it capped and marked truncated", len(r.Stdout))
		}
		peak = max(peak, rss())
	}
	if grew := peak - before; grew > 32<<20 {
		t.Errorf("the operator's RSS grew by %.1f MiB (%.1f → %.1f), want at most 32", grew/(1<<20), before/(1<<20), peak/(1<<20))
	}
}

// One user cannot hold the platform's streams: past the cap a stream is
// refused, and other users can still open theirs.
func TestStreamCapPerUser(t *testing.T) {
	t.Parallel()
	u := loggedInAs(t, "bob")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: 300}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	var mu sync.Mutex
	statuses := map[int]int{}
	var bodies []io.Closer
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, sortie.url+"/api/control/stream", nil)
			req.Header.Set("Authorization", "Bearer "+u.token)
			req.Header.Set("Accept", "text/event-stream")
			resp, err := hc.Do(req)
			if err != nil {
				return
			}
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
			if resp.StatusCode == http.StatusOK {
				mu.Lock()
				bodies = append(bodies, resp.Body)
				mu.Unlock()
				return
			}
			if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
				t.Errorf("a refused stream without Retry-After")
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
	if statuses[http.StatusTooManyRequests] == 0 || statuses[http.StatusOK] == 0 || statuses[http.StatusOK]+statuses[http.StatusTooManyRequests] != 200 {
		t.Errorf("200 streams of one user: %v (status: count), want some open and the rest 429", statuses)
	}
	// Someone else is not affected.
	alice := loggedInAs(t, "alice")
	s := alice.follow("")
	s.connected(t)
	s.stop()
	// Closing streams gives the slots back.
	for _, b := range bodies {
		b.Close()
	}
	testwait.Eventually(t, 30*time.Second, "a stream of bob's again after closing his", func() (bool, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, sortie.url+"/api/control/stream", nil)
		req.Header.Set("Authorization", "Bearer "+u.token)
		resp, err := hc.Do(req)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, strconv.Itoa(resp.StatusCode)
	})
}

// redisCLI runs redis-cli against the platform's Redis.
func redisCLI(t *testing.T, args ...string) string {
	t.Helper()
	pw, err := os.ReadFile(filepath.Join(sortie.state, "redis", "password"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(sortie.port("redis"))}, args...)...)
	cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+strings.TrimSpace(string(pw)))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

var usedMemory = regexp.MustCompile(`(?m)^used_memory:(\d+)`)

// Redis full: writes are refused with a clear 503, nothing stored is lost,
// and the platform recovers when there is room again.
func TestRedisFull(t *testing.T) {
	u := loggedIn(t)
	var kept []mission
	for i := range 3 {
		kept = append(kept, u.createMission(map[string]any{"backend": "codex", "workspace_id": defaultWS, "title": fmt.Sprintf("kept %d", i)}))
	}
	limit := redisCLI(t, "CONFIG", "GET", "maxmemory")
	t.Cleanup(func() { redisCLI(t, "CONFIG", "SET", "maxmemory", strings.Fields(limit)[1]) })
	m := usedMemory.FindStringSubmatch(redisCLI(t, "INFO", "memory"))
	used, _ := strconv.Atoi(m[1])
	redisCLI(t, "CONFIG", "SET", "maxmemory", strconv.Itoa(used+64<<10))

	var full answer
	for i := range 2000 {
		a := u.do("POST", "/api/control/missions", map[string]any{"backend": "codex", "workspace_id": defaultWS,
			"title": fmt.Sprintf("filler %d %s", i, strings.Repeat("x", 4000))})
		if a.status == 200 {
			continue
		}
		full = a
		break
	}
	if full.status != http.StatusServiceUnavailable {
		t.Fatalf("creating missions into a full Redis: %d %s, want 503", full.status, clip(full.body))
	}
	if full.code() == "" || full.header.Get("Retry-After") == "" {
		t.Errorf("the full answer: code %q, Retry-After %q: want both", full.code(), full.header.Get("Retry-After"))
	}
	// Reads go on, and everything stored before is there.
	for _, k := range kept {
		if a := u.do("GET", "/api/control/missions/"+k.ID, nil); a.status != 200 {
			t.Errorf("mission %s while Redis is full: %d %s", k.ID, a.status, clip(a.body))
		}
	}
	redisCLI(t, "CONFIG", "SET", "maxmemory", strings.Fields(limit)[1])
	u.createMission(map[string]any{"backend": "codex", "workspace_id": defaultWS, "title": "room again"})
	for _, k := range kept {
		if a := u.do("GET", "/api/control/missions/"+k.ID, nil); a.status != 200 {
			t.Errorf("mission %s after Redis had room again: %d", k.ID, a.status)
		}
	}
}

// The workspace's own environment cannot steer its agent.
func TestAgentSettingsNotFromEnvVars(t *testing.T) {
	t.Parallel()
	u := loggedInAs(t, "alice")
	a := u.do("POST", "/api/workspaces", map[string]any{"name": "e2e-steer", "workspace_type": "container",
		"env_vars": map[string]string{"SORTIE_AGENT_ROOTS": "/", "SORTIE_AGENT_EXEC_MAX_OUTPUT": "999999999999"}})
	if a.status != http.StatusBadRequest {
		if a.status == 200 {
			var ws workspace
			a.decode(t, &ws)
			u.do("DELETE", "/api/workspaces/"+ws.ID, nil)
		}
		t.Fatalf("a workspace setting its agent's SORTIE_AGENT_* variables: %d %s, want 400", a.status, clip(a.body))
	}
	var list []workspace
	u.do("GET", "/api/workspaces", nil).decode(t, &list)
	for _, ws := range list {
		if ws.Name == "e2e-steer" {
			t.Errorf("the refused workspace was stored: %+v", ws)
		}
	}
}

// Looking up ids that do not exist costs the API server nothing.
func TestUnknownIDsDoNotReachTheAPIServer(t *testing.T) {
	t.Parallel()
	u := loggedInAs(t, "bob")
	before := apiserverLists(t)
	for range 100 {
		if a := u.do("GET", "/api/workspaces/"+strings.ToLower(rand.Text()[:12]), nil); a.status != http.StatusNotFound {
			t.Fatalf("an unknown id: %d %s, want 404", a.status, clip(a.body))
		}
	}
	if after := apiserverLists(t); after != before {
		t.Errorf("100 unknown ids made %v Workspace LISTs at the API server", after-before)
	}
}

// apiserverLists is how many LISTs of Workspaces the API server has served.
func apiserverLists(t *testing.T) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Scaled(30*time.Second))
	defer cancel()
	c, err := clustertest.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := c.Clientset.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatalf("the API server's metrics: %v", err)
	}
	var n float64
	for line := range strings.Lines(string(raw)) {
		if strings.HasPrefix(line, "apiserver_request_total{") && strings.Contains(line, `resource="workspaces"`) && strings.Contains(line, `verb="LIST"`) {
			v, _ := strconv.ParseFloat(strings.TrimSpace(line[strings.LastIndexByte(line, ' ')+1:]), 64)
			n += v
		}
	}
	return n
}

// What an agent prints is bounded where it is stored: a 30 MB tool call
// (a Write of a huge file, say) is kept cut, with a marker, and the turn
// goes on to its answer.
func TestHugeToolCallIsStoredTruncated(t *testing.T) {
	t.Parallel()
	u := loggedInAs(t, "bob")
	installCLIs(t, u)
	for _, backend := range []string{"claudecode", "codex"} {
		t.Run(backend, func(t *testing.T) {
			u := loggedInAs(t, "bob")
			m := u.createMission(map[string]any{"backend": backend, "workspace_id": defaultWS, "title": "huge tool call"})
			u.send(m.ID, "huge 30 list the files")
			u.waitAnswers(m.ID, 1)
			a := u.do("GET", "/api/control/missions/"+m.ID+"/events", nil)
			if a.status != 200 {
				t.Fatalf("events: %d %s", a.status, clip(a.body))
			}
			if len(a.body) > 2<<20 {
				t.Errorf("the mission's events are %d bytes after a 30 MB tool call: not bounded", len(a.body))
			}
			var evs []map[string]any
			a.decode(t, &evs)
			found := false
			for _, e := range evs {
				if e["event_type"] != "tool_call" {
					continue
				}
				raw, _ := json.Marshal(e)
				if strings.Contains(string(raw), "[truncated ") {
					found = true
				}
			}
			if !found {
				t.Errorf("no tool_call stored with the truncation marker: %s", clip(a.body))
			}
		})
	}
}
