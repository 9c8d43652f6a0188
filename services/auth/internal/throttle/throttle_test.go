package throttle

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sortie.dev/services/kit/redistest"
	"sortie.dev/services/kit/testwait"
)

func TestGroup(t *testing.T) {
	tests := map[string]struct{ ip, want string }{
		"IPv4 as it is":              {"203.0.113.7", "203.0.113.7"},
		"IPv4 neighbours differ":     {"203.0.113.8", "203.0.113.8"},
		"IPv4-mapped IPv6 is IPv4":   {"::ffff:203.0.113.7", "203.0.113.7"},
		"IPv4-mapped, hex form":      {"::ffff:cb00:7107", "203.0.113.7"},
		"IPv6 by its /64":            {"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		"IPv6 same /64":              {"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"},
		"IPv6 next /64":              {"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		"IPv6 upper case, long form": {"2001:0DB8:0001:0002:0000:0000:0000:0001", "2001:db8:1:2::/64"},
		"IPv6 loopback":              {"::1", "::/64"},
		"IPv6 with a zone":           {"fe80::1%eth0", "fe80::/64"},
		"surrounding space":          {" 10.0.0.1 ", "10.0.0.1"},
		"empty":                      {"", "invalid"},
		"not an address":             {"evil|key", "invalid"},
		"CIDR is not an address":     {"10.0.0.0/8", "invalid"},
		"host name":                  {"localhost", "invalid"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Group(tc.ip); got != tc.want {
				t.Errorf("Group(%q) = %q, want %q", tc.ip, got, tc.want)
			}
		})
	}
}

func TestUserPartIsBounded(t *testing.T) {
	long := strings.Repeat("a", 64<<10)
	if got := userPart(long); len(got) > 64 || got == userPart(long+"b") {
		t.Errorf("a 64 KiB username became %q", got)
	}
	if userPart(" Alice ") != "alice" {
		t.Errorf("usernames must match as the users store matches them")
	}
}

func newThrottle(t *testing.T, l Limits) (*Throttle, *redistest.Server) {
	t.Helper()
	rdb := redistest.Start(t)
	return New(rdb.Client, l), rdb
}

func TestTry(t *testing.T) {
	ctx := context.Background()
	th, rdb := newThrottle(t, Limits{PerUser: 3, PerIP: 5, UserCeiling: 7, Window: time.Minute})
	try := func(user, addr string) Decision {
		t.Helper()
		d, err := th.Try(ctx, user, addr)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// The owner logs in from home once, so home is known.
	if d := try("alice", "198.51.100.1"); !d.Allowed {
		t.Fatalf("first try refused: %+v", d)
	}
	if err := th.Succeed(ctx, "alice", "198.51.100.1"); err != nil {
		t.Fatal(err)
	}

	// Three tries from the attacker lock the pair, not alice elsewhere.
	for i := range 3 {
		if d := try("alice", "203.0.113.9"); !d.Allowed {
			t.Fatalf("try %d refused: %+v", i+1, d)
		}
	}
	d := try("ALICE ", "203.0.113.9")
	if d.Allowed || d.Limit != LimitUser || d.Wait <= 0 || d.Wait > time.Minute {
		t.Errorf("fourth try from the attacker: %+v, want refused by %s within the window", d, LimitUser)
	}
	if d := try("alice", "198.51.100.2"); !d.Allowed {
		t.Errorf("alice from another address: %+v", d)
	}
	// A refused try is not counted: the pair stays at its limit.
	if n, _ := rdb.Client.Get(ctx, prefix+"pair:203.0.113.9|alice").Int(); n != 3 {
		t.Errorf("pair count = %d, want 3", n)
	}

	// The address has 3 of its 5; two more usernames use them up.
	try("bob", "203.0.113.9")
	try("carol", "203.0.113.9")
	if d := try("dave", "203.0.113.9"); d.Allowed || d.Limit != LimitAddress {
		t.Errorf("address over its limit: %+v", d)
	}

	// Alice's ceiling (7) is reached by tries from many addresses: new
	// addresses are shut out, home is not.
	for _, a := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3"} {
		try("alice", a)
	}
	if d := try("alice", "192.0.2.4"); d.Allowed || d.Limit != LimitCeiling {
		t.Errorf("a new address past the ceiling: %+v", d)
	}
	if d := try("alice", "198.51.100.1"); !d.Allowed {
		t.Errorf("alice at home past the ceiling: %+v", d)
	}
	// An IPv6 neighbour in the same /64 is the same address.
	if err := th.Succeed(ctx, "alice", "2001:db8:1:2::10"); err != nil {
		t.Fatal(err)
	}
	if d := try("alice", "2001:db8:1:2::99"); !d.Allowed {
		t.Errorf("alice from her own /64 past the ceiling: %+v", d)
	}
}

func TestSucceedGivesBackTheTry(t *testing.T) {
	ctx := context.Background()
	th, rdb := newThrottle(t, Limits{PerUser: 2, PerIP: 3, Window: time.Minute})
	for range 10 { // ten good logins from one office address
		if d, err := th.Try(ctx, "bob", "10.1.1.1"); err != nil || !d.Allowed {
			t.Fatalf("good login refused: %+v %v", d, err)
		}
		if err := th.Succeed(ctx, "bob", "10.1.1.1"); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := rdb.Client.Get(ctx, prefix+"addr:10.1.1.1").Int(); n != 0 {
		t.Errorf("address count after good logins = %d, want 0", n)
	}
	// A failure stays counted for the address after a success.
	th.Try(ctx, "x", "10.1.1.1")
	th.Try(ctx, "bob", "10.1.1.1")
	th.Succeed(ctx, "bob", "10.1.1.1")
	if n, _ := rdb.Client.Get(ctx, prefix+"addr:10.1.1.1").Int(); n != 1 {
		t.Errorf("address count = %d, want the one failure", n)
	}
}

func TestWindowEnds(t *testing.T) {
	ctx := context.Background()
	th, rdb := newThrottle(t, Limits{PerUser: 1, PerIP: 10, Window: time.Minute})
	th.Try(ctx, "alice", "10.0.0.1")
	if d, _ := th.Try(ctx, "alice", "10.0.0.1"); d.Allowed {
		t.Fatal("second try allowed at a limit of 1")
	}
	// A count that lost its expiry (an operator's SET) gets one back
	// rather than locking forever.
	rdb.Client.Persist(ctx, prefix+"pair:10.0.0.1|alice")
	if d, _ := th.Try(ctx, "alice", "10.0.0.1"); d.Allowed || d.Wait != time.Minute {
		t.Errorf("lock without expiry: %+v, want a new window", d)
	}
	if ttl := rdb.Client.PTTL(ctx, prefix+"pair:10.0.0.1|alice").Val(); ttl <= 0 {
		t.Errorf("the count has no expiry again: %v", ttl)
	}
	rdb.Client.PExpire(ctx, prefix+"pair:10.0.0.1|alice", time.Millisecond)
	testwait.Eventually(t, time.Second, "the count to expire", func() (bool, string) {
		n := rdb.Client.Exists(ctx, prefix+"pair:10.0.0.1|alice").Val()
		return n == 0, fmt.Sprint(n, " keys")
	})
	if d, _ := th.Try(ctx, "alice", "10.0.0.1"); !d.Allowed {
		t.Errorf("after the window: %+v", d)
	}
}

// Tries are counted before anything else happens: a burst of concurrent
// tries is allowed exactly the limit.
func TestConcurrentTries(t *testing.T) {
	ctx := context.Background()
	th, _ := newThrottle(t, Limits{PerUser: 5, PerIP: 50, UserCeiling: 100, Window: time.Minute})
	var allowed, refused atomic.Int32
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			d, err := th.Try(ctx, "bob", "203.0.113.5")
			switch {
			case err != nil:
				t.Error(err)
			case d.Allowed:
				allowed.Add(1)
			default:
				refused.Add(1)
			}
		})
	}
	wg.Wait()
	if allowed.Load() != 5 || refused.Load() != 95 {
		t.Errorf("100 concurrent tries: %d allowed, %d refused; want 5 and 95", allowed.Load(), refused.Load())
	}
}

func TestCountFailure(t *testing.T) {
	ctx := context.Background()
	th, rdb := newThrottle(t, Limits{PerUser: 5, PerIP: 3, Window: time.Minute})
	for i := range 3 {
		if d, err := th.CountFailure(ctx, "203.0.113.7"); err != nil || !d.Allowed {
			t.Fatalf("failure %d: %+v %v", i+1, d, err)
		}
	}
	if d, _ := th.CountFailure(ctx, "::ffff:203.0.113.7"); d.Allowed || d.Limit != LimitAddress || d.Wait <= 0 {
		t.Errorf("fourth failure: %+v, want the address refused", d)
	}
	// Only the address was counted: no key names a client.
	keys, _ := rdb.Client.Keys(ctx, "*").Result()
	if len(keys) != 1 || keys[0] != prefix+"addr:203.0.113.7" {
		t.Errorf("keys = %v, want only the address's count", keys)
	}
	// Logins from that address are over the same limit.
	if d, _ := th.Try(ctx, "alice", "203.0.113.7"); d.Allowed {
		t.Errorf("a login from an address that failed at client secrets: %+v", d)
	}
}
