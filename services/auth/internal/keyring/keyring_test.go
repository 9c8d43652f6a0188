package keyring

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"sortie.dev/services/kit/authn"
)

func mustKey(t *testing.T, created time.Time) *Key {
	t.Helper()
	k, err := Generate(created)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRingRotation(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	clock := func() time.Time { return now }
	ttl := 24 * time.Hour
	k1 := mustKey(t, t0)
	k2 := mustKey(t, t0.Add(48*time.Hour))
	k3 := mustKey(t, t0.Add(96*time.Hour)) // not yet due

	r, err := New([]*Key{k3, k1, k2}, ttl, clock)
	if err != nil {
		t.Fatal(err)
	}
	if r.Active().ID != k1.ID {
		t.Errorf("at t0 the active key is %s, want k1 (later keys are not due)", r.Active().ID)
	}

	steps := []struct {
		at         time.Duration
		wantActive *Key
		wantJWKS   []*Key
	}{
		{at: 0, wantActive: k1, wantJWKS: []*Key{k3, k2, k1}}, // future keys are published early
		{at: 50 * time.Hour, wantActive: k2, wantJWKS: []*Key{k3, k2, k1}},
		{at: 71 * time.Hour, wantActive: k2, wantJWKS: []*Key{k3, k2, k1}}, // k1's tokens may still live
		{at: 73 * time.Hour, wantActive: k2, wantJWKS: []*Key{k3, k2}},     // k1 retired for > ttl
		{at: 97 * time.Hour, wantActive: k3, wantJWKS: []*Key{k3, k2}},
		{at: 121 * time.Hour, wantActive: k3, wantJWKS: []*Key{k3}},
	}
	for _, st := range steps {
		now = t0.Add(st.at)
		if err := r.Set([]*Key{k1, k2, k3}); err != nil {
			t.Fatal(err)
		}
		if r.Active().ID != st.wantActive.ID {
			t.Errorf("at +%v active = %s, want %s", st.at, r.Active().ID, st.wantActive.ID)
		}
		doc := r.JWKS()
		var got []string
		for _, k := range doc.Keys {
			got = append(got, k.Kid)
		}
		var want []string
		for _, k := range st.wantJWKS {
			want = append(want, k.ID)
		}
		if len(got) != len(want) {
			t.Errorf("at +%v jwks = %v, want %v", st.at, got, want)
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("at +%v jwks = %v, want %v", st.at, got, want)
				break
			}
		}
		for _, k := range []*Key{k1, k2, k3} {
			_, err := r.PublicKey(context.Background(), k.ID)
			published := contains(want, k.ID)
			if published != (err == nil) {
				t.Errorf("at +%v PublicKey(%s) err = %v, published = %v", st.at, k.ID[:6], err, published)
			}
			if err != nil && !errors.Is(err, authn.ErrUnknownKey) {
				t.Errorf("withdrawn key error = %v, want ErrUnknownKey", err)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestKeyFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := LoadDir(dir); !errors.Is(err, ErrNoKeys) {
		t.Errorf("missing folder: %v, want ErrNoKeys", err)
	}
	created := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	k, path, err := WriteNew(dir, created)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := os.Stat(path)
	if info.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", info.Mode().Perm())
	}
	// Files Kubernetes puts in Secret mounts and stray files are ignored.
	os.WriteFile(filepath.Join(dir, "..data"), []byte("x"), 0o600)
	os.WriteFile(filepath.Join(dir, "README"), []byte("x"), 0o600)
	keys, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].ID != k.ID || !keys[0].Created.Equal(created) {
		t.Errorf("loaded %+v, want the written key created %v", keys, created)
	}
	os.WriteFile(filepath.Join(dir, "broken.pem"), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	if _, err := LoadDir(dir); err == nil {
		t.Error("a broken key file was accepted")
	}
}

func TestThumbprintIsStable(t *testing.T) {
	// RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
	pub := []byte{0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a,
		0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a}
	if got, want := Thumbprint(pub), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"; got != want {
		t.Errorf("Thumbprint = %s, want %s (RFC 8037 A.3)", got, want)
	}
}
