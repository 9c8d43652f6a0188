package redistest

import (
	"context"
	"testing"
)

func TestStartAndRestartKeepsAppendOnlyData(t *testing.T) {
	ctx := context.Background()
	s := Start(t, "--appendonly", "yes", "--appendfsync", "always")
	if err := s.Client.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.Restart(t)
	got, err := s.Client.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("after restart GET k = %q, %v; want v", got, err)
	}
}

func TestServersAreIsolated(t *testing.T) {
	ctx := context.Background()
	a, b := Start(t), Start(t)
	if a.Addr == b.Addr {
		t.Fatalf("two servers share %s", a.Addr)
	}
	a.Client.Set(ctx, "only-in-a", "1", 0)
	if n, _ := b.Client.Exists(ctx, "only-in-a").Result(); n != 0 {
		t.Error("a key written to one server is visible in the other")
	}
}
