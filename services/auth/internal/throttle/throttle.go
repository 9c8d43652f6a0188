// Package throttle limits failed logins per username and per client
// address in Redis, so every replica of the auth service shares the count.
package throttle

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limits are the failures allowed in a window.
type Limits struct {
	PerUser int
	PerIP   int
	Window  time.Duration
}

// Throttle counts failed logins. A count starts at the first failure and
// expires one window later; at the limit the user or address is refused
// until then.
type Throttle struct {
	rdb    redis.UniversalClient
	limits Limits
}

// New returns a Throttle.
func New(rdb redis.UniversalClient, limits Limits) *Throttle {
	return &Throttle{rdb: rdb, limits: limits}
}

func userKey(username string) string {
	return "sortie:auth:fail:user:" + strings.ToLower(strings.TrimSpace(username))
}
func ipKey(ip string) string { return "sortie:auth:fail:ip:" + ip }

// Check returns how long the caller must wait, or 0 when it may try.
func (t *Throttle) Check(ctx context.Context, username, ip string) (time.Duration, error) {
	pipe := t.rdb.Pipeline()
	userCount := pipe.Get(ctx, userKey(username))
	userTTL := pipe.PTTL(ctx, userKey(username))
	ipCount := pipe.Get(ctx, ipKey(ip))
	ipTTL := pipe.PTTL(ctx, ipKey(ip))
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return 0, fmt.Errorf("check login throttle: %w", err)
	}
	var wait time.Duration
	if n, _ := userCount.Int(); n >= t.limits.PerUser {
		wait = max(wait, userTTL.Val())
	}
	if n, _ := ipCount.Int(); n >= t.limits.PerIP {
		wait = max(wait, ipTTL.Val())
	}
	return wait, nil
}

// Fail records a failed login.
func (t *Throttle) Fail(ctx context.Context, username, ip string) error {
	pipe := t.rdb.TxPipeline()
	for _, key := range []string{userKey(username), ipKey(ip)} {
		pipe.Incr(ctx, key)
		pipe.ExpireNX(ctx, key, t.limits.Window)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("record failed login: %w", err)
	}
	return nil
}

// Succeed forgets a user's failures after a successful login. The
// address's count stays: one good password must not unlock guessing at
// other accounts from the same place.
func (t *Throttle) Succeed(ctx context.Context, username string) error {
	if err := t.rdb.Del(ctx, userKey(username)).Err(); err != nil {
		return fmt.Errorf("reset login throttle: %w", err)
	}
	return nil
}
