package authn

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// PrincipalsKey is the Redis hash in which the auth service publishes the
// current principals (docs/tenancy.md): field "user:<id>" holds the user's
// role, "client:<id>" holds "service", and "_published" the unix time of
// the publication. Auth replaces the whole hash at once at start and on
// every reload of its users or clients file.
const PrincipalsKey = "sortie:auth:principals"

// PublishedField is the field of PrincipalsKey that says when auth last
// published; a hash without it is a hash auth never wrote.
const PublishedField = "_published"

// UserField and ClientField name a principal's field in PrincipalsKey.
func UserField(id string) string   { return "user:" + id }
func ClientField(id string) string { return "client:" + id }

// ServiceSubjectPrefix starts the sub of a service client's own token.
const ServiceSubjectPrefix = "service:"

// ErrNoPrincipals means the principals hash does not exist: the auth
// service never published (or Redis lost it). Verification fails closed
// on it (the middleware answers 503) rather than accept everyone.
var ErrNoPrincipals = errors.New("no principals are published in Redis (" + PrincipalsKey + " is missing; is the auth service running?)")

// Reasons a token whose signature is good is refused because its principal
// changed. Each is the message a client sees (401).
var (
	ErrUserChanged   = errors.New("the token's user no longer exists or its role changed")
	ErrClientRemoved = errors.New("the token's service client no longer exists")
)

// PrincipalChecker tells the verifier which principals currently exist.
// Lookup returns, for each field (UserField, ClientField), its current value
// (a user's role, "service" for a client) or "" when there is no such
// principal. Any error fails the verification closed (503): ErrNoPrincipals
// when nothing is published, or the store being unreachable.
type PrincipalChecker interface {
	Lookup(ctx context.Context, fields ...string) ([]string, error)
}

// MaxPrincipalCacheAge is the longest a verifier may trust a looked-up
// principal: removing, disabling or demoting a user reaches every service
// within this long after auth publishes (docs/tenancy.md).
const MaxPrincipalCacheAge = 15 * time.Second

// RedisPrincipalsOptions configure RedisPrincipals.
type RedisPrincipalsOptions struct {
	// MaxAge is how long a looked-up principal is reused [15s]; larger
	// values are lowered to MaxPrincipalCacheAge, negative ones disable
	// the cache.
	MaxAge time.Duration
	// MaxEntries bounds the cache [10000 principals].
	MaxEntries int
	// Now replaces time.Now in tests.
	Now func() time.Time
}

// RedisPrincipals is the PrincipalChecker of every service: it reads the
// hash auth publishes and caches each principal in process for at most
// MaxAge, so a request costs no lookup while its principals are fresh.
type RedisPrincipals struct {
	client redis.UniversalClient
	opts   RedisPrincipalsOptions

	mu    sync.Mutex
	cache map[string]cachedPrincipal
	gen   uint64 // bumped by Forget: answers fetched before it are not cached
}

type cachedPrincipal struct {
	value     string // "" for a principal that does not exist
	fetchedAt time.Time
}

// NewRedisPrincipals returns a checker reading PrincipalsKey from client.
func NewRedisPrincipals(client redis.UniversalClient, opts RedisPrincipalsOptions) *RedisPrincipals {
	if opts.MaxAge == 0 || opts.MaxAge > MaxPrincipalCacheAge {
		opts.MaxAge = MaxPrincipalCacheAge
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 10000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &RedisPrincipals{client: client, opts: opts, cache: map[string]cachedPrincipal{}}
}

// Lookup implements PrincipalChecker.
func (p *RedisPrincipals) Lookup(ctx context.Context, fields ...string) ([]string, error) {
	_, values, err := p.lookup(ctx, "", fields)
	return values, err
}

// Forget drops every cached principal. The auth service calls it after it
// publishes, so that its own verification sees the change at once.
func (p *RedisPrincipals) Forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.cache)
	p.gen++
}

// lookup answers fields from the cache and Redis; with jti set it also asks
// whether the token was revoked, in the same round trip as the principals
// it must fetch (one EXISTS alone when every principal is cached).
func (p *RedisPrincipals) lookup(ctx context.Context, jti string, fields []string) (revoked bool, values []string, err error) {
	values = make([]string, len(fields))
	var missing []int
	now := p.opts.Now()
	p.mu.Lock()
	gen := p.gen
	for i, f := range fields {
		if e, ok := p.cache[f]; ok && now.Sub(e.fetchedAt) < p.opts.MaxAge {
			values[i] = e.value
		} else {
			missing = append(missing, i)
		}
	}
	p.mu.Unlock()
	if len(missing) == 0 && jti == "" {
		return false, values, nil
	}

	pipe := p.client.Pipeline()
	var exists *redis.IntCmd
	if jti != "" {
		exists = pipe.Exists(ctx, RevokedKey(jti))
	}
	var got *redis.SliceCmd
	if len(missing) > 0 {
		ask := make([]string, 0, len(missing)+1)
		ask = append(ask, PublishedField)
		for _, i := range missing {
			ask = append(ask, fields[i])
		}
		got = pipe.HMGet(ctx, PrincipalsKey, ask...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return false, nil, fmt.Errorf("look up principals: %w", err)
	}
	if exists != nil {
		revoked = exists.Val() > 0
	}
	if got == nil {
		return revoked, values, nil
	}
	answers := got.Val()
	if answers[0] == nil {
		return revoked, nil, ErrNoPrincipals
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, i := range missing {
		s, _ := answers[k+1].(string)
		values[i] = s
		if p.opts.MaxAge > 0 && p.gen == gen {
			p.store(fields[i], cachedPrincipal{value: s, fetchedAt: now})
		}
	}
	return revoked, values, nil
}

// store caches one principal, keeping the cache within MaxEntries: expired
// entries go first, then arbitrary ones (a dropped entry is only looked up
// again). The caller holds p.mu.
func (p *RedisPrincipals) store(field string, e cachedPrincipal) {
	if _, ok := p.cache[field]; !ok && len(p.cache) >= p.opts.MaxEntries {
		for f, old := range p.cache {
			if e.fetchedAt.Sub(old.fetchedAt) >= p.opts.MaxAge {
				delete(p.cache, f)
			}
		}
		for f := range p.cache {
			if len(p.cache) < p.opts.MaxEntries {
				break
			}
			delete(p.cache, f)
		}
	}
	p.cache[field] = e
}

// cached reports how many principals are cached (tests).
func (p *RedisPrincipals) cached() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.cache)
}

// PrincipalSet is what the auth service publishes: its current (enabled)
// users with their roles, and its service clients.
type PrincipalSet struct {
	Users   map[string]Role // user id -> role
	Clients []string        // client ids
}

// PublishPrincipals replaces PrincipalsKey with set, atomically: the hash
// is written under a temporary key of its own and RENAMEd over the old one
// in one MULTI, so a verifier sees the old set or the new, never a mix, and
// concurrent publishers (several auth replicas) never share a temporary
// key. The auth service calls it; tests of other services call it to stand
// in for auth.
func PublishPrincipals(ctx context.Context, client redis.UniversalClient, set PrincipalSet, now time.Time) error {
	fields := make(map[string]any, len(set.Users)+len(set.Clients)+1)
	for id, role := range set.Users {
		if id == "" || !role.Valid() || role == RoleService {
			return fmt.Errorf("publish principals: user %q has role %q", id, role)
		}
		fields[UserField(id)] = string(role)
	}
	for _, id := range set.Clients {
		if id == "" {
			return errors.New("publish principals: a client id is empty")
		}
		fields[ClientField(id)] = string(RoleService)
	}
	fields[PublishedField] = strconv.FormatInt(now.Unix(), 10)
	tmp := PrincipalsKey + ":tmp:" + strings.ToLower(rand.Text())
	pipe := client.TxPipeline()
	pipe.HSet(ctx, tmp, fields)
	pipe.Rename(ctx, tmp, PrincipalsKey)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("publish principals: %w", err)
	}
	return nil
}

// checkActor checks the act claim: a service acting for a user names
// itself, and a service's own token never carries one (a service cannot
// act for a service, and role service would otherwise gain an actor's
// standing).
func checkActor(c *Claims) error {
	if c.Actor == nil {
		return nil
	}
	if c.Role == RoleService {
		return errors.New("a service token carries an act claim")
	}
	if c.Actor.Subject == "" {
		return errors.New("the act claim has no sub")
	}
	return nil
}

// principalFields returns the fields of PrincipalsKey a token is checked
// against (after checkActor): its user's, or its client's for a service
// token ("service:<client id>"), and a delegated token's actor client.
func principalFields(c *Claims) ([]string, error) {
	if c.Role == RoleService {
		id, ok := strings.CutPrefix(c.Subject, ServiceSubjectPrefix)
		if !ok || id == "" {
			return nil, fmt.Errorf("service token subject %q is not %s<client id>", c.Subject, ServiceSubjectPrefix)
		}
		return []string{ClientField(id)}, nil
	}
	if c.Actor == nil {
		return []string{UserField(c.Subject)}, nil
	}
	return []string{UserField(c.Subject), ClientField(c.Actor.Subject)}, nil
}

// checkPrincipals compares the looked-up values with the claims.
func checkPrincipals(c *Claims, fields, values []string) error {
	for i, f := range fields {
		switch {
		case strings.HasPrefix(f, "user:"):
			if values[i] != string(c.Role) {
				return fmt.Errorf("%w (user %q: token role %q, current %q)", ErrUserChanged, c.Subject, c.Role, values[i])
			}
		case values[i] != string(RoleService):
			return fmt.Errorf("%w (%s)", ErrClientRemoved, f)
		}
	}
	return nil
}
