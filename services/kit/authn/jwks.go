package authn

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// JWK is one public key as published at /api/auth/jwks (RFC 8037 OKP).
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Kid string `json:"kid"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
}

// JWKSDocument is the body of the JWKS endpoint.
type JWKSDocument struct {
	Keys []JWK `json:"keys"`
}

// PublicKeyJWK encodes an Ed25519 public key.
func PublicKeyJWK(kid string, pub ed25519.PublicKey) JWK {
	return JWK{Kty: "OKP", Crv: "Ed25519", X: base64.RawURLEncoding.EncodeToString(pub), Kid: kid, Use: "sig", Alg: "EdDSA"}
}

// Ed25519 decodes the key, refusing anything but an Ed25519 OKP key.
func (k JWK) Ed25519() (ed25519.PublicKey, error) {
	if k.Kty != "OKP" || k.Crv != "Ed25519" {
		return nil, fmt.Errorf("key %q is %s/%s, not OKP/Ed25519", k.Kid, k.Kty, k.Crv)
	}
	if k.Alg != "" && k.Alg != "EdDSA" {
		return nil, fmt.Errorf("key %q is for %s, not EdDSA", k.Kid, k.Alg)
	}
	b, err := base64.RawURLEncoding.DecodeString(k.X)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("key %q has a malformed x", k.Kid)
	}
	return ed25519.PublicKey(b), nil
}

// JWKSOptions configure a JWKS client.
type JWKSOptions struct {
	HTTPClient *http.Client // [a client with a 5s timeout]
	// MaxAge is how long a fetched set is used before it is refreshed
	// [5m]; rotation publishes new keys well before they sign. An aged set
	// keeps being used while the refresh runs, and for as long as auth
	// cannot be reached.
	MaxAge time.Duration
	// MinRefetch is the least time between two fetches [10s], whatever
	// asks for them (unknown kids, an aged set): a flood of forged kids
	// cannot turn into a flood of requests to auth, nor can an auth that
	// is down be asked again on every request. Before any set was fetched
	// the wait is at most 1s, so a service that starts before auth is not
	// shut out for long.
	MinRefetch time.Duration
	Now        func() time.Time
}

// fetchTimeout bounds one fetch, whatever the HTTP client allows: the
// fetch runs on its own, not on the context of whoever started it.
const fetchTimeout = 10 * time.Second

// maxJWKSBytes bounds the JWKS document read from auth.
const maxJWKSBytes = 1 << 20

// JWKS fetches and caches the auth service's public keys. It implements
// KeySet. Fetches are single-flight (everyone who needs one waits for the
// same one), at most one per MinRefetch, and never throw away the last
// good set: while auth is down, tokens signed by known keys still verify.
type JWKS struct {
	url  string
	opts JWKSOptions

	mu        sync.Mutex
	keys      map[string]ed25519.PublicKey // the last good set
	fetchedAt time.Time                    // when keys were fetched
	triedAt   time.Time                    // when the last fetch began
	lastErr   error                        // how the last fetch failed, nil when it did not
	inflight  *jwksFetch                   // the fetch running now, if any
}

// jwksFetch is one fetch that callers wait for together.
type jwksFetch struct {
	done    chan struct{} // closed when the fetch has ended
	waiters int           // callers that waited for it (under JWKS.mu)
}

// NewJWKS returns a client for the JWKS document at url.
func NewJWKS(url string, opts JWKSOptions) *JWKS {
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if opts.MaxAge == 0 {
		opts.MaxAge = 5 * time.Minute
	}
	if opts.MinRefetch == 0 {
		opts.MinRefetch = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &JWKS{url: url, opts: opts}
}

// PublicKey implements KeySet. A known kid is answered at once, from an
// aged set too (which starts a refresh in the background); an unknown kid
// waits for a fetch, when one may run, and is otherwise unknown.
func (j *JWKS) PublicKey(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	j.mu.Lock()
	now := j.opts.Now()
	if key, ok := j.keys[kid]; ok {
		if now.Sub(j.fetchedAt) > j.opts.MaxAge {
			j.refreshLocked(now)
		}
		j.mu.Unlock()
		return key, nil
	}
	f := j.refreshLocked(now)
	if f == nil {
		err := j.unknownLocked()
		j.mu.Unlock()
		return nil, err
	}
	f.waiters++
	j.mu.Unlock()

	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for jwks: %w", ctx.Err())
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if key, ok := j.keys[kid]; ok {
		return key, nil
	}
	return nil, j.unknownLocked()
}

// unknownLocked is the answer for a kid the set does not hold: unknown,
// when the set is current, or the fetch's failure when auth could not be
// asked (the token may be signed by a key published since).
func (j *JWKS) unknownLocked() error {
	if j.lastErr != nil {
		return j.lastErr
	}
	return ErrUnknownKey
}

// refreshLocked returns the running fetch, or starts one unless the last
// began less than MinRefetch ago; nil when none may run.
func (j *JWKS) refreshLocked(now time.Time) *jwksFetch {
	if j.inflight != nil {
		return j.inflight
	}
	wait := j.opts.MinRefetch
	if j.keys == nil {
		wait = min(wait, time.Second)
	}
	if !j.triedAt.IsZero() && now.Sub(j.triedAt) < wait {
		return nil
	}
	f := &jwksFetch{done: make(chan struct{})}
	j.inflight, j.triedAt = f, now
	go j.run(f)
	return f
}

// run fetches on a context of its own: a caller that gives up must not
// fail the fetch for everyone else waiting on it.
func (j *JWKS) run(f *jwksFetch) {
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	keys, err := j.fetch(ctx)
	j.mu.Lock()
	if err == nil {
		j.keys, j.fetchedAt = keys, j.opts.Now()
	}
	j.lastErr = err
	j.inflight = nil
	j.mu.Unlock()
	close(f.done)
}

func (j *JWKS) fetch(ctx context.Context) (map[string]ed25519.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks request: %w", err)
	}
	resp, err := j.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch jwks: %s answered %s", j.url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read jwks: %w", err)
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("jwks at %s is larger than %d bytes", j.url, maxJWKSBytes)
	}
	keys, err := ParseJWKS(data)
	if err != nil {
		return nil, fmt.Errorf("jwks at %s: %w", j.url, err)
	}
	return keys, nil
}

// ParseJWKS decodes a JWKS document into its usable Ed25519 keys by kid.
// Keys of other types are skipped; a document with none usable, or two
// keys under one kid, is an error.
func ParseJWKS(data []byte) (map[string]ed25519.PublicKey, error) {
	var doc JWKSDocument
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("decode jwks: %w", err)
	}
	keys := make(map[string]ed25519.PublicKey, len(doc.Keys))
	var errs []error
	for _, k := range doc.Keys {
		pub, err := k.Ed25519()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if k.Kid == "" {
			errs = append(errs, errors.New("a key has no kid"))
			continue
		}
		if prev, dup := keys[k.Kid]; dup && !prev.Equal(pub) {
			return nil, fmt.Errorf("two keys have kid %q", k.Kid)
		}
		keys[k.Kid] = pub
	}
	if len(keys) == 0 && len(errs) == 0 {
		return nil, errors.New("no keys")
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no usable key: %w", errors.Join(errs...))
	}
	return keys, nil
}
