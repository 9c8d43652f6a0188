// Package keyring holds the auth service's Ed25519 signing keys: it loads
// them from a folder (a mounted Secret), signs with the newest, and keeps
// publishing a retired key until every token it signed has expired.
package keyring

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"sortie.dev/services/kit/authn"
)

// Key is one signing key.
type Key struct {
	ID      string // RFC 7638 thumbprint, base64url
	Created time.Time
	Private ed25519.PrivateKey
	// Retired is when a newer key took over signing; zero for the active key.
	Retired time.Time
}

// Public returns the public half.
func (k *Key) Public() ed25519.PublicKey { return k.Private.Public().(ed25519.PublicKey) }

// Thumbprint is the RFC 7638 JWK thumbprint of an Ed25519 public key: a kid
// every party can recompute from the key alone.
func Thumbprint(pub ed25519.PublicKey) string {
	canonical := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

type snapshot struct {
	active *Key
	byID   map[string]*Key
	keys   []*Key // newest first
}

// Ring is the set of keys in use. Reload swaps it atomically, so readers
// never lock.
type Ring struct {
	tokenTTL time.Duration
	now      func() time.Time
	snap     atomic.Pointer[snapshot]
}

// New returns a ring holding keys. tokenTTL is the longest lifetime of a
// token it signs: a retired key stays published that long.
func New(keys []*Key, tokenTTL time.Duration, now func() time.Time) (*Ring, error) {
	if now == nil {
		now = time.Now
	}
	r := &Ring{tokenTTL: tokenTTL, now: now}
	if err := r.Set(keys); err != nil {
		return nil, err
	}
	return r, nil
}

// Set replaces the keys. The newest key whose creation time has come signs;
// each older key is retired at the creation of the key after it.
func (r *Ring) Set(keys []*Key) error {
	if len(keys) == 0 {
		return errors.New("no signing keys")
	}
	sorted := append([]*Key(nil), keys...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Created.After(sorted[j].Created) })
	now := r.now()
	s := &snapshot{byID: map[string]*Key{}}
	var newer *Key
	for _, k := range sorted {
		k := *k
		k.Retired = time.Time{}
		if newer != nil && !newer.Created.After(now) {
			k.Retired = newer.Created
		}
		if s.active == nil && !k.Created.After(now) {
			s.active = &k
		}
		if _, dup := s.byID[k.ID]; dup {
			continue
		}
		s.byID[k.ID] = &k
		s.keys = append(s.keys, &k)
		newer = &k
	}
	if s.active == nil {
		s.active = s.keys[len(s.keys)-1] // all in the future: sign with the oldest
	}
	r.snap.Store(s)
	return nil
}

// Active is the key that signs new tokens.
func (r *Ring) Active() *Key { return r.snap.Load().active }

// published reports whether a key is still in use for verification.
func (r *Ring) published(k *Key, now time.Time) bool {
	return k.Retired.IsZero() || now.Before(k.Retired.Add(r.tokenTTL))
}

// PublicKey implements authn.KeySet for the service's own verification.
func (r *Ring) PublicKey(_ context.Context, kid string) (ed25519.PublicKey, error) {
	k, ok := r.snap.Load().byID[kid]
	if !ok || !r.published(k, r.now()) {
		return nil, authn.ErrUnknownKey
	}
	return k.Public(), nil
}

// JWKS is the public key set to publish: every key not retired for longer
// than a token lives, newest first.
func (r *Ring) JWKS() authn.JWKSDocument {
	now := r.now()
	doc := authn.JWKSDocument{Keys: []authn.JWK{}}
	for _, k := range r.snap.Load().keys {
		if r.published(k, now) {
			doc.Keys = append(doc.Keys, authn.PublicKeyJWK(k.ID, k.Public()))
		}
	}
	return doc
}

// Generate makes a new key created now.
func Generate(now time.Time) (*Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return &Key{ID: Thumbprint(priv.Public().(ed25519.PublicKey)), Created: now.UTC().Truncate(time.Second), Private: priv}, nil
}

// createdHeader is the PEM header that records when a key was made: the
// order of keys must survive copies into Secrets, which lose file times.
const createdHeader = "Created"

// Encode writes a key as a PKCS #8 PEM block with its creation time.
func Encode(k *Key) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{
		Type:    "PRIVATE KEY",
		Headers: map[string]string{createdHeader: k.Created.UTC().Format(time.RFC3339)},
		Bytes:   der,
	}), nil
}

// Decode reads a PEM key. A key without a Created header gets fallback.
func Decode(data []byte, fallback time.Time) (*Key, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PEM \"PRIVATE KEY\" block")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS #8 key: %w", err)
	}
	priv, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want Ed25519", parsed)
	}
	created := fallback
	if v := block.Headers[createdHeader]; v != "" {
		if created, err = time.Parse(time.RFC3339, v); err != nil {
			return nil, fmt.Errorf("created header %q: %w", v, err)
		}
	}
	return &Key{ID: Thumbprint(priv.Public().(ed25519.PublicKey)), Created: created, Private: priv}, nil
}

// ErrNoKeys means the keys folder is missing or holds no key.
var ErrNoKeys = errors.New("no signing keys")

// LoadDir reads every *.pem (and *.key) file in dir. Files Kubernetes adds
// to Secret mounts (..data and friends) are skipped.
func LoadDir(dir string) ([]*Key, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: folder %s does not exist", ErrNoKeys, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read keys folder: %w", err)
	}
	var keys []*Key
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".pem") || strings.HasSuffix(name, ".key")) {
			continue
		}
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read key %s: %w", name, err)
		}
		info, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("stat key %s: %w", name, err)
		}
		k, err := Decode(data, info.ModTime())
		if err != nil {
			return nil, fmt.Errorf("key %s: %w", name, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no *.pem file in %s", ErrNoKeys, dir)
	}
	return keys, nil
}

// WriteNew generates a key and saves it in dir atomically (write, sync,
// rename), readable only by the owner. It returns the key and its path.
func WriteNew(dir string, now time.Time) (*Key, string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, "", fmt.Errorf("create keys folder: %w", err)
	}
	k, err := Generate(now)
	if err != nil {
		return nil, "", err
	}
	data, err := Encode(k)
	if err != nil {
		return nil, "", err
	}
	name := fmt.Sprintf("%s-%s.pem", k.Created.Format("20060102T150405Z"), k.ID[:8])
	path := filepath.Join(dir, name)
	if err := writeAtomic(path, data, 0o600); err != nil {
		return nil, "", err
	}
	return k, path, nil
}

func writeAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// SigningKey implements tokens.Signer.
func (r *Ring) SigningKey() (string, any) {
	k := r.Active()
	return k.ID, k.Private
}
