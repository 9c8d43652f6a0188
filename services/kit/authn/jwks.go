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
	// MaxAge is how long a fetched set is used before it is fetched again
	// [5m]; rotation publishes new keys well before they sign.
	MaxAge time.Duration
	// MinRefetch limits refetches caused by unknown kids [10s], so a flood
	// of forged tokens cannot turn into a flood of requests to auth.
	MinRefetch time.Duration
	Now        func() time.Time
}

// JWKS fetches and caches the auth service's public keys. It implements
// KeySet: an unknown kid triggers one refetch (rotation), rate limited.
type JWKS struct {
	url  string
	opts JWKSOptions

	mu        sync.Mutex
	keys      map[string]ed25519.PublicKey
	fetchedAt time.Time
	triedAt   time.Time
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

// PublicKey implements KeySet.
func (j *JWKS) PublicKey(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	now := j.opts.Now()
	stale := j.keys == nil || now.Sub(j.fetchedAt) > j.opts.MaxAge
	if key, ok := j.keys[kid]; ok && !stale {
		return key, nil
	}
	if !stale && now.Sub(j.triedAt) < j.opts.MinRefetch {
		return nil, ErrUnknownKey
	}
	j.triedAt = now
	keys, err := j.fetch(ctx)
	if err != nil {
		if key, ok := j.keys[kid]; ok {
			return key, nil // keep serving a known key while auth is down
		}
		return nil, err
	}
	j.keys, j.fetchedAt = keys, now
	if key, ok := keys[kid]; ok {
		return key, nil
	}
	return nil, ErrUnknownKey
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
	var doc JWKSDocument
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
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
		keys[k.Kid] = pub
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("jwks at %s holds no usable key: %w", j.url, errors.Join(errs...))
	}
	return keys, nil
}
