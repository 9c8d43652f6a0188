package authn

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"sortie.dev/services/kit/testclock"
	"sortie.dev/services/kit/testwait"
)

// waiters is how many callers wait for the running fetch.
func (j *JWKS) waitersNow() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.inflight == nil {
		return 0
	}
	return j.inflight.waiters
}

// Concurrent verifications of tokens whose kid the cache does not know
// (the first ones after start, and the first after a rotation) wait for
// one fetch together.
func TestJWKSRefreshIsSingleFlight(t *testing.T) {
	old, next := newKey(t, "old"), newKey(t, "new")
	srv := newJWKSServer(t, old)
	clk := testclock.New(time.Now())
	j := NewJWKS(srv.URL, JWKSOptions{MinRefetch: time.Nanosecond, Now: clk.Now})
	v := NewVerifier(j, VerifierOptions{Issuer: testIssuer, Audience: testAudience})

	const n = 50
	round := func(k signingKey, what string) {
		t.Helper()
		before := srv.requests.Load()
		free := srv.hold(t)
		tok := sign(t, k, validClaims(time.Now()))
		errs := make(chan error, n)
		for range n {
			go func() { _, err := v.Verify(context.Background(), tok); errs <- err }()
		}
		// Every verification waits on the one fetch before it may end.
		testwait.Eventually(t, 5*time.Second, what+": all verifications waiting on one fetch", func() (bool, string) {
			w := j.waitersNow()
			return w == n, fmt.Sprintf("%d waiting, %d requests", w, srv.requests.Load())
		})
		free()
		for range n {
			if err := <-errs; err != nil {
				t.Errorf("%s: %v", what, err)
			}
		}
		if got := srv.requests.Load() - before; got != 1 {
			t.Errorf("%s: %d concurrent verifications made %d fetches, want 1", what, n, got)
		}
	}
	round(old, "at start")
	srv.publish(old, next)
	clk.Advance(time.Second)
	round(next, "after a rotation")
}

// One caller giving up does not fail the fetch the others wait for.
func TestJWKSCallerCancelDoesNotFailTheFetch(t *testing.T) {
	key := newKey(t, "k1")
	srv := newJWKSServer(t, key)
	j := NewJWKS(srv.URL, JWKSOptions{})
	free := srv.hold(t)
	ctx, cancel := context.WithCancel(context.Background())
	impatient := make(chan error, 1)
	go func() { _, err := j.PublicKey(ctx, "k1"); impatient <- err }()
	patient := make(chan error, 1)
	go func() { _, err := j.PublicKey(context.Background(), "k1"); patient <- err }()
	testwait.Eventually(t, 5*time.Second, "both callers waiting", func() (bool, string) {
		return j.waitersNow() == 2, fmt.Sprint(j.waitersNow())
	})
	cancel()
	if err := <-impatient; !errors.Is(err, context.Canceled) {
		t.Errorf("the caller that gave up: %v, want context.Canceled", err)
	}
	free()
	if err := <-patient; err != nil {
		t.Errorf("the caller that waited: %v", err)
	}
	if srv.requests.Load() != 1 {
		t.Errorf("%d fetches, want 1", srv.requests.Load())
	}
}

// An attacker sending tokens with random kids cannot make us hammer auth:
// at most one fetch per MinRefetch, however many there are and however
// they arrive.
func TestJWKSUnknownKidsAreRateLimited(t *testing.T) {
	key := newKey(t, "k1")
	srv := newJWKSServer(t, key)
	clk := testclock.New(time.Now())
	j := NewJWKS(srv.URL, JWKSOptions{MinRefetch: 10 * time.Second, Now: clk.Now})
	v := NewVerifier(j, VerifierOptions{Issuer: testIssuer, Audience: testAudience})
	good := sign(t, key, validClaims(time.Now()))
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	// 60 simulated seconds, 100 forged tokens each, half of them at once.
	for range 60 {
		clk.Advance(time.Second)
		var wg sync.WaitGroup
		for i := range 100 {
			forged := sign(t, signingKey{kid: rand.Text(), priv: key.priv}, validClaims(time.Now()))
			verify := func() {
				var invalid *InvalidTokenError
				if _, err := v.Verify(context.Background(), forged); !errors.As(err, &invalid) {
					t.Errorf("a forged kid: %v, want *InvalidTokenError", err)
				}
			}
			if i%2 == 0 {
				wg.Go(verify)
			} else {
				verify()
			}
		}
		wg.Wait()
	}
	// One at start, then one per 10s of the 60.
	if got := srv.requests.Load(); got > 1+6 {
		t.Errorf("6000 forged kids over 60s made %d fetches, want at most 7", got)
	}
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Errorf("the real token after the flood: %v", err)
	}
}

// While auth is stopped or hanging, tokens signed by known keys keep
// verifying, at once, from the last good set; auth is asked at most once
// per MinRefetch meanwhile, and its new keys are picked up when it is back.
func TestJWKSServesLastGoodKeysWhileAuthIsDown(t *testing.T) {
	key, next := newKey(t, "k1"), newKey(t, "k2")
	clk := testclock.New(time.Now())
	opts := func() JWKSOptions {
		return JWKSOptions{MaxAge: 5 * time.Minute, MinRefetch: 10 * time.Second, Now: clk.Now}
	}
	tok := sign(t, key, validClaims(time.Now()))
	// started is auth publishing key, and a verifier that has fetched it.
	started := func(t *testing.T) (*jwksServer, *Verifier) {
		srv := newJWKSServer(t, key)
		v := NewVerifier(NewJWKS(srv.URL, opts()), VerifierOptions{Issuer: testIssuer, Audience: testAudience})
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		return srv, v
	}

	t.Run("stopped", func(t *testing.T) {
		srv, v := started(t)
		srv.Close() // auth is gone: connections are refused
		for range 20 {
			clk.Advance(time.Minute)
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Fatalf("a known key's token with auth stopped: %v", err)
			}
		}
		// A kid we never saw cannot be checked: a dependency error (503),
		// not an invalid token.
		clk.Advance(time.Minute)
		var invalid *InvalidTokenError
		_, err := v.Verify(context.Background(), sign(t, next, validClaims(time.Now())))
		if err == nil || errors.As(err, &invalid) {
			t.Errorf("an unknown kid with auth stopped: %v, want a dependency error", err)
		}
	})

	t.Run("down, then back", func(t *testing.T) {
		srv, v := started(t)
		srv.down.Store(true)
		clk.Advance(10 * time.Minute)
		for range 200 { // 200 requests within one MinRefetch
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Fatalf("a known key's token with auth answering 503: %v", err)
			}
		}
		testwait.Eventually(t, 5*time.Second, "the background refresh to be tried", func() (bool, string) {
			return srv.requests.Load() == 2, fmt.Sprint(srv.requests.Load())
		})
		if got := srv.requests.Load(); got != 2 {
			t.Errorf("200 verifications with auth down asked it %d times, want 1", got-1)
		}
		// Auth is back, with a rotated key.
		srv.down.Store(false)
		srv.publish(key, next)
		clk.Advance(11 * time.Second)
		if _, err := v.Verify(context.Background(), sign(t, next, validClaims(time.Now()))); err != nil {
			t.Errorf("the new key once auth is back: %v", err)
		}
	})

	t.Run("hanging", func(t *testing.T) {
		srv, v := started(t)
		srv.hold(t) // auth accepts and never answers, until the test ends
		clk.Advance(10 * time.Minute)
		// The aged set starts a refresh that hangs; the verification does
		// not wait for it: it ends while the fetch is still held.
		for range 10 {
			if _, err := v.Verify(context.Background(), tok); err != nil {
				t.Fatalf("a known key's token with auth hanging: %v", err)
			}
		}
		testwait.Eventually(t, 5*time.Second, "the refresh to reach auth", func() (bool, string) {
			return srv.requests.Load() == 2, fmt.Sprint(srv.requests.Load())
		})
		if srv.answered.Load() != 1 {
			t.Errorf("the hung refresh was answered (%d answers)", srv.answered.Load())
		}
	})
}

func TestParseJWKS(t *testing.T) {
	a, b := newKey(t, "a"), newKey(t, "b")
	doc := func(keys ...JWK) string {
		s := `{"keys":[`
		for i, k := range keys {
			if i > 0 {
				s += ","
			}
			s += fmt.Sprintf(`{"kty":%q,"crv":%q,"x":%q,"kid":%q,"alg":%q}`, k.Kty, k.Crv, k.X, k.Kid, k.Alg)
		}
		return s + `]}`
	}
	ja, jb := PublicKeyJWK("a", a.pub()), PublicKeyJWK("b", b.pub())
	rsa := JWK{Kty: "RSA", Kid: "r", X: ja.X}
	tests := map[string]struct {
		doc     string
		want    []string // kids found; nil: an error
		wantErr bool
	}{
		"two keys":               {doc: doc(ja, jb), want: []string{"a", "b"}},
		"an RSA key skipped":     {doc: doc(ja, rsa), want: []string{"a"}},
		"only RSA":               {doc: doc(rsa), wantErr: true},
		"empty":                  {doc: `{"keys":[]}`, wantErr: true},
		"not JSON":               {doc: `{"keys":`, wantErr: true},
		"short x":                {doc: doc(JWK{Kty: "OKP", Crv: "Ed25519", X: "AAAA", Kid: "s"}), wantErr: true},
		"no kid":                 {doc: doc(PublicKeyJWK("", a.pub())), wantErr: true},
		"one kid, two keys":      {doc: doc(ja, PublicKeyJWK("a", b.pub())), wantErr: true},
		"one key, listed twice":  {doc: doc(ja, ja), want: []string{"a"}},
		"alg other than EdDSA":   {doc: doc(JWK{Kty: "OKP", Crv: "Ed25519", X: ja.X, Kid: "a", Alg: "ES256"}), wantErr: true},
		"trailing data":          {doc: doc(ja) + `{}`, wantErr: true},
		"keys is not a list":     {doc: `{"keys":{"a":1}}`, wantErr: true},
		"x with padding":         {doc: doc(JWK{Kty: "OKP", Crv: "Ed25519", X: ja.X + "=", Kid: "a"}), wantErr: true},
		"x in standard base64":   {doc: `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+"}]}`, wantErr: true},
		"unknown fields ignored": {doc: `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"` + ja.X + `","use":"sig","extra":1}],"more":true}`, want: []string{"a"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			keys, err := ParseJWKS([]byte(tc.doc))
			if tc.wantErr {
				if err == nil {
					t.Errorf("ParseJWKS accepted it: %v", keys)
				}
				return
			}
			if err != nil || len(keys) != len(tc.want) {
				t.Fatalf("ParseJWKS = %v, %v; want kids %v", keys, err, tc.want)
			}
			for _, kid := range tc.want {
				if len(keys[kid]) != 32 {
					t.Errorf("kid %q: %v", kid, keys[kid])
				}
			}
		})
	}
}
