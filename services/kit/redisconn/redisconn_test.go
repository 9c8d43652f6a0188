package redisconn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"sortie.dev/services/kit/redistest"
)

func TestConnect(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "s3cret")
	ctx := context.Background()

	client, err := Connect(ctx, Options{URL: srv.URL, Password: "s3cret"})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer client.Close()
	if err := Check(client)(ctx); err != nil {
		t.Errorf("readiness check on a live server: %v", err)
	}

	if _, err := Connect(ctx, Options{URL: srv.URL, Password: "wrong", ConnectTimeout: 300 * time.Millisecond}); err == nil {
		t.Error("Connect with a wrong password succeeded")
	}
	if _, err := Connect(ctx, Options{URL: "http://nope"}); err == nil || !strings.Contains(err.Error(), "redis url") {
		t.Errorf("Connect with a bad URL: %v", err)
	}
}

// A Redis at maxmemory with noeviction refuses every kind of write the
// services make, and IsOOM recognises each refusal (and nothing else).
func TestIsOOM(t *testing.T) {
	srv := redistest.Start(t, "--maxmemory-policy", "noeviction")
	ctx := context.Background()
	rdb := srv.Client
	// Fill it, then lower the limit below what it uses: every write that
	// needs memory is refused from now on.
	big := strings.Repeat("x", 64<<10)
	for i := range 32 {
		if err := rdb.Set(ctx, fmt.Sprint("fill", i), big, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.ConfigSet(ctx, "maxmemory", "1mb").Err(); err != nil {
		t.Fatal(err)
	}
	script := redis.NewScript(`redis.call('GET', KEYS[1]); return redis.call('RPUSH', KEYS[1], ARGV[1])`)
	tests := map[string]struct {
		err  func() error
		want bool
	}{
		"set":    {func() error { return rdb.Set(ctx, "k", "v", 0).Err() }, true},
		"script": {func() error { return script.Run(ctx, rdb, []string{"l"}, "v").Err() }, true},
		"multi": {func() error {
			cmds, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "a", "1", 0)
				p.ZAdd(ctx, "z", redis.Z{Score: 1, Member: "m"})
				return nil
			})
			return TxErr(cmds, err)
		}, true},
		"wrapped":  {func() error { return fmt.Errorf("create mission: %w", rdb.HSet(ctx, "h", "f", "v").Err()) }, true},
		"read":     {func() error { return rdb.Get(ctx, "fill1").Err() }, false},
		"delete":   {func() error { return rdb.Del(ctx, "fill2").Err() }, false},
		"nil":      {func() error { return nil }, false},
		"missing":  {func() error { return rdb.Get(ctx, "nope").Err() }, false},
		"plain":    {func() error { return errors.New("OOM command not allowed, but not from redis") }, false},
		"wrongtyp": {func() error { return rdb.LPush(ctx, "fill3", "x").Err() }, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.err()
			if got := IsOOM(err); got != tc.want {
				t.Errorf("IsOOM(%v) = %v, want %v", err, got, tc.want)
			}
		})
	}
	// Nothing of the refused transaction was written.
	if n, _ := rdb.Exists(ctx, "a", "z", "k", "l", "h").Result(); n != 0 {
		t.Errorf("%d keys of refused writes exist", n)
	}
	// A type error is not OOM once there is room again.
	if err := rdb.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.LPush(ctx, "fill3", "x").Err(); err == nil || IsOOM(err) {
		t.Errorf("WRONGTYPE error %v: want an error that is not OOM", err)
	}
}
