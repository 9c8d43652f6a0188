// Package throttle limits password guessing in Redis, so every replica of
// the auth service shares the counts.
//
// A login try is counted before its password is checked, in one Lua
// script that also decides whether the try may go ahead: a burst of
// concurrent tries gets exactly as many password checks as a slow
// attacker. Counts are kept per (username, client address) pair, per
// address across usernames and, as a ceiling on guessing spread over many
// addresses, per username across addresses. The pair is what locks: five
// wrong passwords from the attacker's address lock that address out of
// the account, never its owner somewhere else. The per-username ceiling
// only ever shuts out addresses the user has not logged in from, so even a
// distributed attack leaves the owner's usual places working.
//
// Service clients are never locked: their secrets are long and random, so
// only the address of someone failing at them is counted (CountFailure).
package throttle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Limits are the tries allowed in a window.
type Limits struct {
	// PerUser is the failed tries of one username from one address.
	PerUser int
	// PerIP is the failed tries (logins and client credentials) from one
	// address, whatever they name.
	PerIP int
	// UserCeiling is the failed tries of one username from all addresses
	// together before only addresses it has logged in from may try; 0 is
	// no ceiling.
	UserCeiling int
	// Window is how long a count lasts from its first try, and so the
	// longest a lock lasts.
	Window time.Duration
	// KnownFor is how long an address where a user logged in stays one the
	// ceiling does not shut out [30 days].
	KnownFor time.Duration
}

// Which limit refused a try.
const (
	LimitUser    = "user_address" // the username from this address
	LimitAddress = "address"      // this address, any username
	LimitCeiling = "user"         // the username from everywhere, and this address is new to it
)

// Decision is the answer to a try.
type Decision struct {
	Allowed bool
	// Wait is how long until the refusing limit's window ends (Allowed false).
	Wait time.Duration
	// Limit names the limit that refused (Allowed false).
	Limit string
}

// Throttle counts tries. It is safe for concurrent use.
type Throttle struct {
	rdb     redis.UniversalClient
	limits  Limits
	try     *redis.Script
	succeed *redis.Script
	fail    *redis.Script
}

// New returns a Throttle.
func New(rdb redis.UniversalClient, limits Limits) *Throttle {
	if limits.KnownFor <= 0 {
		limits.KnownFor = 30 * 24 * time.Hour
	}
	return &Throttle{
		rdb: rdb, limits: limits,
		try:     redis.NewScript(tryScript),
		succeed: redis.NewScript(succeedScript),
		fail:    redis.NewScript(failScript),
	}
}

// over is shared by the scripts: whether key's count has reached limit,
// and the milliseconds left of its window. A count that somehow lost its
// expiry gets one again, so no lock can last forever.
const overFunc = `
local function over(key, limit, window)
  local n = tonumber(redis.call('GET', key) or '0')
  if limit <= 0 or n < limit then return false, 0 end
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    redis.call('PEXPIRE', key, window)
    ttl = window
  end
  return true, ttl
end
local function count(key, window)
  redis.call('INCR', key)
  if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, window) end
end
`

// tryScript: KEYS pair, address, user, known; ARGV per-user, per-address,
// ceiling, window (ms). Answers {allowed, wait ms, limit}.
const tryScript = overFunc + `
local window = tonumber(ARGV[4])
local o, ttl = over(KEYS[1], tonumber(ARGV[1]), window)
if o then return {0, ttl, 'user_address'} end
o, ttl = over(KEYS[2], tonumber(ARGV[2]), window)
if o then return {0, ttl, 'address'} end
o, ttl = over(KEYS[3], tonumber(ARGV[3]), window)
if o and redis.call('EXISTS', KEYS[4]) == 0 then return {0, ttl, 'user'} end
count(KEYS[1], window)
count(KEYS[2], window)
if tonumber(ARGV[3]) > 0 then count(KEYS[3], window) end
return {1, 0, ''}
`

// succeedScript: KEYS pair, address, user, known; ARGV known-for (ms).
// The pair's failures are forgotten; the address and the username get
// back the one try the success used, but keep their failures: one good
// password must not unlock guessing at other accounts from the same place.
const succeedScript = `
redis.call('DEL', KEYS[1])
for i = 2, 3 do
  local n = tonumber(redis.call('GET', KEYS[i]) or '0')
  if n > 0 then redis.call('DECR', KEYS[i]) end
end
redis.call('SET', KEYS[4], '1', 'PX', ARGV[1])
return 1
`

// failScript: KEYS address; ARGV per-address, window (ms). Counts a failed
// client credential unless the address is already over its limit.
const failScript = overFunc + `
local window = tonumber(ARGV[2])
local o, ttl = over(KEYS[1], tonumber(ARGV[1]), window)
if o then return {0, ttl, 'address'} end
count(KEYS[1], window)
return {1, 0, ''}
`

const prefix = "sortie:auth:try:"

// keys names the counts of one try. An address never holds "|", so the
// pair key cannot be read two ways.
func (t *Throttle) keys(username, addr string) []string {
	u := userPart(username)
	a := Group(addr)
	return []string{
		prefix + "pair:" + a + "|" + u,
		prefix + "addr:" + a,
		prefix + "user:" + u,
		prefix + "known:" + a + "|" + u,
	}
}

// userPart is the username as it matches a user (case and surrounding
// space do not count). A name longer than any user's (64) is hashed, so an
// attacker cannot make keys of 64 KiB.
func userPart(username string) string {
	u := strings.ToLower(strings.TrimSpace(username))
	if len(u) > 64 {
		sum := sha256.Sum256([]byte(u))
		return "long:" + hex.EncodeToString(sum[:16])
	}
	return u
}

// Group is the address a count is kept for: an IPv4 address as it is
// (IPv4-mapped IPv6 included), an IPv6 address by its /64, the smallest
// block a single subscriber gets, so one attacker cannot rotate through
// the 2^64 addresses of their own network. Anything else (never expected
// from a socket or a proxy we trust) is kept as one "invalid" address.
func Group(ip string) string {
	a, err := netip.ParseAddr(strings.TrimSpace(ip))
	if err != nil {
		return "invalid"
	}
	a = a.WithZone("").Unmap()
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

func decision(res any) (Decision, error) {
	v, ok := res.([]any)
	if !ok || len(v) != 3 {
		return Decision{}, fmt.Errorf("throttle script answered %v", res)
	}
	allowed, _ := v[0].(int64)
	wait, _ := v[1].(int64)
	limit, _ := v[2].(string)
	return Decision{Allowed: allowed == 1, Wait: time.Duration(wait) * time.Millisecond, Limit: limit}, nil
}

// Try counts a login try for username from addr before its password is
// checked, or refuses it when a limit is reached. Call Succeed when the
// password was right.
func (t *Throttle) Try(ctx context.Context, username, addr string) (Decision, error) {
	l := t.limits
	res, err := t.try.Run(ctx, t.rdb, t.keys(username, addr), l.PerUser, l.PerIP, l.UserCeiling, l.Window.Milliseconds()).Result()
	if err != nil {
		return Decision{}, fmt.Errorf("count login try: %w", err)
	}
	return decision(res)
}

// Succeed records that username's try from addr was right: the pair's
// failures are forgotten, the try is given back, and addr becomes one of
// the user's known addresses.
func (t *Throttle) Succeed(ctx context.Context, username, addr string) error {
	if err := t.succeed.Run(ctx, t.rdb, t.keys(username, addr), t.limits.KnownFor.Milliseconds()).Err(); err != nil {
		return fmt.Errorf("reset login throttle: %w", err)
	}
	return nil
}

// CountFailure counts a failed client credential against addr only (the
// client it named is never locked), or refuses when addr is already over
// its limit. Either way the credential was wrong.
func (t *Throttle) CountFailure(ctx context.Context, addr string) (Decision, error) {
	res, err := t.fail.Run(ctx, t.rdb, []string{prefix + "addr:" + Group(addr)}, t.limits.PerIP, t.limits.Window.Milliseconds()).Result()
	if err != nil {
		return Decision{}, fmt.Errorf("count failed client credential: %w", err)
	}
	return decision(res)
}
