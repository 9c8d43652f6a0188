// Package streamcap caps the event streams (SSE) one user may have open,
// counted across every replica in Redis, so that one user cannot hold a
// replica's connections, goroutines and memory.
//
// Each open stream holds a slot: a member of the user's sorted set scored
// with its expiry. The stream renews its slot while it is open and removes
// it when it ends; a replica that crashes renews nothing, so its slots
// expire after the TTL and the user gets them back. Expiries come from the
// Redis server's clock, so replicas with skewed clocks agree.
package streamcap

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"sortie.dev/services/kit/redisconn"
)

// ErrFull is returned by Acquire when the user has the most streams open.
var ErrFull = errors.New("too many open event streams")

// Limiter hands out stream slots. It is safe for concurrent use.
type Limiter struct {
	rdb *redis.Client
	max int
	ttl time.Duration
	log *slog.Logger

	// local counts each user's streams on this replica. It is the cap
	// when Redis cannot record a slot because it is full (maxmemory):
	// streams are reads and keep working then, bounded per replica.
	mu    sync.Mutex
	local map[string]int
}

// New returns a Limiter allowing max streams per user, with slots that
// last ttl without renewal.
func New(rdb *redis.Client, max int, ttl time.Duration, log *slog.Logger) *Limiter {
	if log == nil {
		log = slog.Default()
	}
	return &Limiter{rdb: rdb, max: max, ttl: ttl, log: log, local: map[string]int{}}
}

// Max is the cap.
func (l *Limiter) Max() int { return l.max }

func slotsKey(user string) string { return "mc:u:{" + user + "}:streams" }

// The Redis clock in milliseconds, inside a script.
const redisNow = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

var acquireScript = redis.NewScript(redisNow + `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)

var renewScript = redis.NewScript(redisNow + `
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// Acquire takes a slot for one stream of user, or returns ErrFull. The
// slot is renewed until release is called (which must be, once, when the
// stream ends).
func (l *Limiter) Acquire(ctx context.Context, user string) (release func(), err error) {
	l.mu.Lock()
	if l.local[user] >= l.max {
		l.mu.Unlock()
		return nil, ErrFull
	}
	l.local[user]++
	l.mu.Unlock()
	unlocal := func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.local[user]--; l.local[user] <= 0 {
			delete(l.local, user)
		}
	}

	slot := newSlot()
	key := slotsKey(user)
	ttl := l.ttl.Milliseconds()
	ok, err := acquireScript.Run(ctx, l.rdb, []string{key}, l.max, slot, ttl).Int()
	switch {
	case redisconn.IsOOM(err):
		// Redis has no room for the slot: count on this replica alone.
		l.log.Warn("redis is full: event streams are capped per replica until it has room", "user_id", user)
		return sync.OnceFunc(unlocal), nil
	case err != nil:
		unlocal()
		return nil, fmt.Errorf("take a stream slot: %w", err)
	case ok == 0:
		unlocal()
		return nil, ErrFull
	}

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.renew(key, slot, stop)
	}()
	return sync.OnceFunc(func() {
		close(stop)
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.rdb.ZRem(ctx, key, slot).Err(); err != nil {
			// It expires with its TTL instead.
			l.log.Warn("cannot free a stream slot", "user_id", user, "error", err.Error())
		}
		unlocal()
	}), nil
}

// renew keeps the slot alive until stop is closed.
func (l *Limiter) renew(key, slot string, stop <-chan struct{}) {
	tick := time.NewTicker(l.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
		err := renewScript.Run(ctx, l.rdb, []string{key}, slot, l.ttl.Milliseconds()).Err()
		cancel()
		if err != nil {
			l.log.Debug("cannot renew a stream slot", "error", err.Error())
		}
	}
}

func newSlot() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // never fails on Linux
	return hex.EncodeToString(b[:])
}
