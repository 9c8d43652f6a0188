package throttle

import (
	"context"
	"testing"
	"time"

	"sortie.dev/services/kit/redistest"
)

// BenchmarkTrySucceed is the throttle's share of a good login: the Try
// script (check and count three keys) and the Succeed script, two Redis
// round trips against a real redis-server on loopback.
func BenchmarkTrySucceed(b *testing.B) {
	rdb := redistest.Start(b)
	th := New(rdb.Client, Limits{PerUser: 5, PerIP: 50, UserCeiling: 100, Window: time.Minute})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d, err := th.Try(ctx, "alice", "203.0.113.7")
		if err != nil || !d.Allowed {
			b.Fatalf("%+v %v", d, err)
		}
		if err := th.Succeed(ctx, "alice", "203.0.113.7"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTryRefused is a try refused at the limit: what a flood costs
// the service per request, before any bcrypt.
func BenchmarkTryRefused(b *testing.B) {
	rdb := redistest.Start(b)
	th := New(rdb.Client, Limits{PerUser: 1, PerIP: 50, Window: time.Hour})
	ctx := context.Background()
	th.Try(ctx, "alice", "203.0.113.7")
	b.ReportAllocs()
	for b.Loop() {
		if d, err := th.Try(ctx, "alice", "203.0.113.7"); err != nil || d.Allowed {
			b.Fatalf("%+v %v", d, err)
		}
	}
}
