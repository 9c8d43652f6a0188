package streamcap

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"sortie.dev/services/kit/redistest"
	"sortie.dev/services/kit/testwait"
)

// The cap holds across replicas (two limiters on one Redis), a released
// slot is free at once, and a dead replica's slot comes back after its TTL.
func TestCapAcrossReplicas(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	a := New(rs.Client, 3, 3*time.Second, nil)
	b := New(rs.Client, 3, 3*time.Second, nil)
	var releases []func()
	for i, l := range []*Limiter{a, b, a} {
		r, err := l.Acquire(ctx, "u")
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		releases = append(releases, r)
	}
	for _, l := range []*Limiter{a, b} {
		if _, err := l.Acquire(ctx, "u"); !errors.Is(err, ErrFull) {
			t.Fatalf("a fourth stream: %v", err)
		}
	}
	if r, err := b.Acquire(ctx, "someone-else"); err != nil {
		t.Fatalf("another user: %v", err)
	} else {
		r()
	}
	releases[0]()
	releases[0]() // twice is harmless
	r, err := b.Acquire(ctx, "u")
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	// Slots outlive their TTL while renewed.
	r()
	// A slot its replica stopped renewing (it crashed) expires.
	now, _ := rs.Client.Time(ctx).Result()
	rs.Client.ZAdd(ctx, slotsKey("u"), redis.Z{Score: float64(now.UnixMilli() + 1000), Member: "dead"})
	if _, err := a.Acquire(ctx, "u"); !errors.Is(err, ErrFull) {
		t.Fatalf("with a dead replica's slot: %v", err)
	}
	testwait.Eventually(t, 10*time.Second, "the dead slot expires", func() (bool, string) {
		r, err := a.Acquire(ctx, "u")
		if err != nil {
			return false, err.Error()
		}
		r()
		return true, ""
	})
	for _, r := range releases[1:] {
		r()
	}
	if n, _ := rs.Client.ZCard(ctx, slotsKey("u")).Result(); n != 0 {
		t.Errorf("%d slots left after every stream ended", n)
	}
}

// Open slots are renewed: their expiry moves on while the stream is open.
func TestSlotsAreRenewed(t *testing.T) {
	rs := redistest.Start(t)
	ctx := context.Background()
	l := New(rs.Client, 1, 3*time.Second, nil)
	r, err := l.Acquire(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	defer r()
	expiry := func() float64 {
		zs, _ := rs.Client.ZRangeWithScores(ctx, slotsKey("u"), 0, -1).Result()
		if len(zs) != 1 {
			return 0
		}
		return zs[0].Score
	}
	first := expiry()
	testwait.Eventually(t, 10*time.Second, "the slot is renewed", func() (bool, string) {
		return expiry() > first, fmt.Sprintf("expiry %v", expiry())
	})
}

// With Redis at maxmemory a stream is still a read that works, capped on
// each replica.
func TestRedisFullCapsPerReplica(t *testing.T) {
	rs := redistest.Start(t, "--maxmemory-policy", "noeviction")
	ctx := context.Background()
	for i := range 32 {
		rs.Client.Set(ctx, fmt.Sprint("fill", i), strings.Repeat("x", 64<<10), 0)
	}
	rs.Client.ConfigSet(ctx, "maxmemory", "1mb")
	l := New(rs.Client, 2, 3*time.Second, nil)
	r1, err1 := l.Acquire(ctx, "u")
	r2, err2 := l.Acquire(ctx, "u")
	if err1 != nil || err2 != nil {
		t.Fatalf("streams while Redis is full: %v, %v", err1, err2)
	}
	if _, err := l.Acquire(ctx, "u"); !errors.Is(err, ErrFull) {
		t.Errorf("past the cap while Redis is full: %v", err)
	}
	r1()
	r2()
	if r, err := l.Acquire(ctx, "u"); err != nil {
		t.Errorf("after releases: %v", err)
	} else {
		r()
	}
}
