package service_test

// The auth service under attack: what someone without an account, or with
// someone else's username, can do to the login and token routes, and what
// must keep working for the owner when they do. Every attack is checked
// twice: it is refused, and nothing the service stores changes beyond the
// attacker's own throttle counts.

import (
	"bufio"
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sortie.dev/services/kit/apitest"
	"sortie.dev/services/kit/openapitest"
	"sortie.dev/services/kit/testwait"
)

// caller is a client whose connections come from one loopback address
// (any of 127.0.0.0/8 reaches the service), the way different people
// reach the service through the network; header, when set, is added to
// every request, as a client forging it would.
type caller struct {
	a      *authServer
	http   *http.Client
	header http.Header
}

func (a *authServer) from(ip string) *caller {
	a.t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: testwait.Scaled(5 * time.Second)}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 128}
	a.t.Cleanup(tr.CloseIdleConnections)
	base := &http.Client{Transport: tr, Timeout: testwait.Scaled(30 * time.Second)}
	return &caller{a: a, http: openapitest.Load(a.t, spec()).Client(a.t, base), header: http.Header{}}
}

// forwarded is the caller with X-Forwarded-For set to xff on every request.
func (c *caller) forwarded(xff string) *caller {
	n := *c
	n.header = http.Header{"X-Forwarded-For": {xff}}
	return &n
}

func (c *caller) post(path, contentType, body string, basic ...string) response {
	t := c.a.t
	t.Helper()
	req, err := http.NewRequest("POST", c.a.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	maps.Copy(req.Header, c.header)
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return apitest.Read(t, resp)
}

func (c *caller) login(username, password string) response {
	c.a.t.Helper()
	return c.post("/api/auth/login", "application/json", fmt.Sprintf(`{"username":%q,"password":%q}`, username, password))
}

func (c *caller) token(id, secret string) response {
	c.a.t.Helper()
	return c.post("/api/auth/token", "application/json", fmt.Sprintf(`{"grant_type":"client_credentials","client_id":%q,"client_secret":%q}`, id, secret))
}

// tooMany checks a throttle's answer: 429, Retry-After in whole seconds
// within the window, and the JSON error.
func tooMany(t *testing.T, what string, r response, window time.Duration) {
	t.Helper()
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("%s: %d %s, want 429", what, r.Status, r.Body)
	}
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || secs < 1 || time.Duration(secs)*time.Second > window+time.Second {
		t.Errorf("%s: Retry-After %q, want whole seconds, at most the window (%v)", what, r.Header.Get("Retry-After"), window)
	}
	if code := r.Code(t); code != "rate_limited" {
		t.Errorf("%s: code %q, want rate_limited", what, code)
	}
}

// stored is everything in the service's Redis but the throttle's counts:
// what an attack must leave as it was.
func (a *authServer) stored() map[string]string {
	a.t.Helper()
	ctx := context.Background()
	rdb := a.redis.Client
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		a.t.Fatal(err)
	}
	out := map[string]string{}
	for _, k := range keys {
		if strings.HasPrefix(k, "sortie:auth:try:") {
			continue
		}
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "string":
			out[k] = rdb.Get(ctx, k).Val()
		case "hash":
			out[k] = fmt.Sprint(rdb.HGetAll(ctx, k).Val())
		default:
			out[k] = typ + ":" + rdb.Dump(ctx, k).Val()
		}
	}
	return out
}

// throttleKeys lists the throttle's counts, sorted.
func (a *authServer) throttleKeys() []string {
	a.t.Helper()
	keys, err := a.redis.Client.Keys(context.Background(), "sortie:auth:try:*").Result()
	if err != nil {
		a.t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

func (a *authServer) unchanged(what string, before map[string]string) {
	a.t.Helper()
	if after := a.stored(); !maps.Equal(before, after) {
		a.t.Errorf("%s changed what the service stores:\nbefore %v\nafter  %v", what, before, after)
	}
}

// metric is the value of one sample on the service's /metrics.
func (a *authServer) metric(sample string) float64 {
	a.t.Helper()
	resp, err := http.Get(a.url + "/metrics")
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				a.t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// Someone without a service's secret cannot lock it out: bad token requests
// naming it count against their address only, and the real client gets its
// token from anywhere, the attacker's address included.
func TestServiceClientsCannotBeLockedOut(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{
		"SORTIE_AUTH_USERS_FILE":                "$DIR/users.json",
		"SORTIE_AUTH_CLIENTS_FILE":              "$DIR/clients.json",
		"SORTIE_AUTH_LOGIN_MAX_FAILURES":        "5",
		"SORTIE_AUTH_LOGIN_MAX_FAILURES_PER_IP": "6",
	})
	before := a.stored()
	attacker := a.from("127.0.0.41")
	form := func(id, secret string) string {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {id}, "client_secret": {secret}}.Encode()
	}
	attacks := []func() response{
		func() response { return attacker.token("mission-control", rand.Text()) },
		func() response {
			return attacker.post("/api/auth/token", "application/x-www-form-urlencoded", form("mission-control", rand.Text()))
		},
		func() response {
			return attacker.post("/api/auth/token", "application/json", `{}`, "mission-control", rand.Text())
		},
		func() response { return attacker.token("workspace-operator", rand.Text()) },
	}
	for i := range 12 {
		r := attacks[i%len(attacks)]()
		switch {
		case i < 6 && r.Status != http.StatusUnauthorized:
			t.Fatalf("bad token request %d: %d %s, want 401", i+1, r.Status, r.Body)
		case i < 6:
			if code := r.Code(t); code != "invalid_client" {
				t.Errorf("bad token request %d: code %q", i+1, code)
			}
		default:
			tooMany(t, fmt.Sprintf("bad token request %d, past the address's limit", i+1), r, 15*time.Minute)
		}
	}
	// Only the attacker's address was counted; no count names a client.
	if got := a.throttleKeys(); !slices.Equal(got, []string{"sortie:auth:try:addr:127.0.0.41"}) {
		t.Errorf("throttle counts after the attack: %v, want only the attacker's address", got)
	}
	a.unchanged("the token attack", before)

	// The real clients, from their own address and from the attacker's.
	for _, from := range []string{"127.0.0.42", "127.0.0.41", "127.0.0.1"} {
		c := a.from(from)
		for id, secret := range map[string]string{"mission-control": clientSecret, "workspace-operator": operatorSecret} {
			if r := c.token(id, secret); r.Status != http.StatusOK {
				t.Errorf("%s from %s after the attack: %d %s", id, from, r.Status, r.Body)
			}
		}
		if r := c.post("/api/auth/token", "application/x-www-form-urlencoded", form("mission-control", clientSecret)); r.Status != http.StatusOK {
			t.Errorf("mission-control (form) from %s: %d %s", from, r.Status, r.Body)
		}
	}
	// The attacker's address is shut out of logins too: it is the same
	// address budget.
	tooMany(t, "a login from the attacker's address", attacker.login("alice", alicePassword), 15*time.Minute)
	if r := a.from("127.0.0.42").login("alice", alicePassword); r.Status != http.StatusOK {
		t.Errorf("alice from elsewhere: %d %s", r.Status, r.Body)
	}
}

// Five bad logins from one address lock that address out of the account,
// not the account's owner on another address; the sixth try is refused
// before its password is checked, even when it is right.
func TestLoginLockoutStaysWithTheAttacker(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{"SORTIE_AUTH_USERS_FILE": "$DIR/users.json"})
	a.from("127.0.0.53").login("alice", alicePassword) // alice's session from before, to be kept
	before := a.stored()
	attacker := a.from("127.0.0.51")
	checked := a.metric(`sortie_auth_logins_total{result="failure"}`)
	for i := range 5 {
		if r := attacker.login("alice", rand.Text()); r.Status != http.StatusUnauthorized || r.Code(t) != "invalid_credentials" {
			t.Fatalf("bad login %d: %d %s, want 401", i+1, r.Status, r.Body)
		}
	}
	tooMany(t, "the sixth try, with the right password", attacker.login("alice", alicePassword), 15*time.Minute)
	tooMany(t, "the same username spelt otherwise", attacker.login(" ALICE", alicePassword), 15*time.Minute)
	if n := a.metric(`sortie_auth_logins_total{result="failure"}`) - checked; n != 5 {
		t.Errorf("%v passwords checked, want 5", n)
	}
	a.unchanged("the login attack", before)

	// alice from another address, and from the one she logged in from.
	for _, from := range []string{"127.0.0.52", "127.0.0.53"} {
		if r := a.from(from).login("alice", alicePassword); r.Status != http.StatusOK {
			t.Errorf("alice from %s: %d %s, want 200", from, r.Status, r.Body)
		}
	}
	// bob from the attacker's address is his own pair: not locked.
	if r := attacker.login("bob", bobPassword); r.Status != http.StatusOK {
		t.Errorf("bob from the attacker's address: %d %s", r.Status, r.Body)
	}
}

// A burst of concurrent bad logins gets no more password checks than a
// slow attacker: every try is counted before its password is checked.
func TestConcurrentLoginBurst(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{"SORTIE_AUTH_USERS_FILE": "$DIR/users.json", "SORTIE_LOG_LEVEL": "info"})
	before := a.stored()
	checked := func() float64 {
		return a.metric(`sortie_auth_logins_total{result="failure"}`) + a.metric(`sortie_auth_logins_total{result="success"}`)
	}
	start := checked()
	attacker := a.from("127.0.0.61")
	statuses := make([]int, 100)
	var wg sync.WaitGroup
	for i := range statuses {
		wg.Go(func() { statuses[i] = attacker.login("bob", rand.Text()).Status })
	}
	wg.Wait()
	counts := map[int]int{}
	for _, s := range statuses {
		counts[s]++
	}
	if n := checked() - start; n != 5 {
		t.Errorf("100 concurrent bad logins: %v passwords checked, want 5", n)
	}
	if counts[http.StatusUnauthorized] != 5 || counts[http.StatusTooManyRequests] != 95 {
		t.Errorf("100 concurrent bad logins answered %v (status: count), want 5 401s and 95 429s", counts)
	}
	a.unchanged("the burst", before)
	if r := a.from("127.0.0.62").login("bob", bobPassword); r.Status != http.StatusOK {
		t.Errorf("bob from his own address after the burst: %d %s", r.Status, r.Body)
	}
}

// A client cannot choose its throttle key with X-Forwarded-For: with no
// proxy trusted the header is ignored, and behind a trusted proxy (the
// gateway of make run, on 127.0.0.1) only what the proxy appended counts.
// IPv6 clients are counted by /64.
func TestForwardedForCannotChooseTheKey(t *testing.T) {
	t.Parallel()
	window := 15 * time.Minute
	t.Run("no proxy trusted", func(t *testing.T) {
		t.Parallel()
		a := startAuth(t, map[string]string{"SORTIE_AUTH_USERS_FILE": "$DIR/users.json", "SORTIE_AUTH_LOGIN_MAX_FAILURES": "3"})
		attacker := a.from("127.0.0.71")
		for i := range 3 {
			r := attacker.forwarded(fmt.Sprintf("1.2.3.%d", i)).login("alice", rand.Text())
			if r.Status != http.StatusUnauthorized {
				t.Fatalf("bad login %d: %d", i+1, r.Status)
			}
		}
		tooMany(t, "a try claiming yet another address", attacker.forwarded("1.2.3.99").login("alice", alicePassword), window)
		if got := a.throttleKeys(); !slices.Contains(got, "sortie:auth:try:pair:127.0.0.71|alice") || slices.ContainsFunc(got, func(k string) bool { return strings.Contains(k, "1.2.3.") }) {
			t.Errorf("throttle counts %v, want them under the socket's address only", got)
		}
	})
	t.Run("behind a trusted proxy", func(t *testing.T) {
		t.Parallel()
		a := startAuth(t, map[string]string{
			"SORTIE_AUTH_USERS_FILE": "$DIR/users.json", "SORTIE_AUTH_LOGIN_MAX_FAILURES": "3",
			"SORTIE_TRUSTED_PROXIES": "127.0.0.1",
		})
		gateway := a.from("127.0.0.1")
		// The proxy appends the peer it saw to what the client sent.
		for i := range 3 {
			r := gateway.forwarded(fmt.Sprintf("10.9.8.%d, 2001:db8:1:2::%x", i, i+1)).login("alice", rand.Text())
			if r.Status != http.StatusUnauthorized {
				t.Fatalf("bad login %d: %d", i+1, r.Status)
			}
			if r := gateway.forwarded("192.0.2.7").login("alice", rand.Text()); r.Status != http.StatusUnauthorized {
				t.Fatalf("bad login %d over IPv4: %d", i+1, r.Status)
			}
		}
		tests := map[string]struct {
			c    *caller
			want int
		}{
			"the attacker, claiming another address":      {gateway.forwarded("10.9.8.77, 2001:db8:1:2::99"), 429},
			"the attacker's /64 neighbour":                {gateway.forwarded("2001:db8:1:2:ffff::1"), 429},
			"the IPv4 attacker":                           {gateway.forwarded("192.0.2.7"), 429},
			"the IPv4 attacker, IPv4-mapped":              {gateway.forwarded("::ffff:192.0.2.7"), 429},
			"the owner, in the next /64":                  {gateway.forwarded("2001:db8:1:3::1"), 200},
			"the owner over IPv4":                         {gateway.forwarded("198.51.100.4"), 200},
			"an untrusted peer's header is not believed":  {a.from("127.0.0.72").forwarded("2001:db8:1:2::1"), 200},
			"the proxy itself, forwarding nobody (a svc)": {gateway, 200},
		}
		for name, tc := range tests {
			r := tc.c.login("alice", alicePassword)
			if tc.want == 429 {
				tooMany(t, name, r, window)
			} else if r.Status != tc.want {
				t.Errorf("%s: %d %s, want %d", name, r.Status, r.Body, tc.want)
			}
		}
	})
}

// The ceiling on one username's failures from all addresses slows guessing
// spread over many addresses, and shuts out only addresses the user has
// not logged in from: the owner's usual places keep working.
func TestUserCeiling(t *testing.T) {
	t.Parallel()
	a := startAuth(t, map[string]string{
		"SORTIE_AUTH_USERS_FILE": "$DIR/users.json", "SORTIE_AUTH_LOGIN_MAX_FAILURES": "2",
		"SORTIE_AUTH_LOGIN_USER_CEILING": "6",
	})
	home := a.from("127.0.0.81")
	if r := home.login("alice", alicePassword); r.Status != http.StatusOK {
		t.Fatalf("alice at home: %d", r.Status)
	}
	before := a.stored()
	for _, ip := range []string{"127.0.0.82", "127.0.0.83", "127.0.0.84"} {
		for range 2 {
			if r := a.from(ip).login("alice", rand.Text()); r.Status != http.StatusUnauthorized {
				t.Fatalf("bad login from %s: %d", ip, r.Status)
			}
		}
	}
	tooMany(t, "a fresh address past the ceiling, right password", a.from("127.0.0.85").login("alice", alicePassword), 15*time.Minute)
	a.unchanged("the distributed attack", before)
	if r := home.login("alice", alicePassword); r.Status != http.StatusOK {
		t.Errorf("alice at home past the ceiling: %d %s", r.Status, r.Body)
	}
	if r := a.from("127.0.0.85").login("bob", bobPassword); r.Status != http.StatusOK {
		t.Errorf("bob is not under alice's ceiling: %d %s", r.Status, r.Body)
	}
}
