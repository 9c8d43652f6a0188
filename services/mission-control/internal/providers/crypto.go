package providers

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// KeySize is the length of the credentials key: AES-256.
const KeySize = 32

// ParseKey reads a credentials key: 32 bytes written as 64 hex digits or
// as base64 (standard or URL alphabet, padded or not). Surrounding white
// space is ignored, so a key file may end with a newline.
func ParseKey(text string) ([]byte, error) {
	s := strings.TrimSpace(text)
	if b, err := hex.DecodeString(s); err == nil && len(b) == KeySize {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == KeySize {
			return b, nil
		}
	}
	return nil, fmt.Errorf("the key must be %d random bytes written as 64 hex digits or in base64 (e.g. `openssl rand -hex 32`)", KeySize)
}

// sealer encrypts credentials with AES-256-GCM. Every value gets a fresh
// random nonce, and the additional data binds a ciphertext to where it is
// stored, so a value copied to another provider's field does not decrypt.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("credentials key: want %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("credentials key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("credentials key: %w", err)
	}
	return &sealer{aead: aead}, nil
}

// sealVersion prefixes stored values, so the format can change later.
const sealVersion = "v1:"

// seal returns "v1:" + base64(nonce ‖ ciphertext ‖ tag).
func (s *sealer) seal(plain []byte, aad string) (string, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal credential: %w", err)
	}
	out := s.aead.Seal(nonce, nonce, plain, []byte(aad))
	return sealVersion + base64.StdEncoding.EncodeToString(out), nil
}

// errUnreadable is a stored value that does not decrypt with this key.
var errUnreadable = errors.New("stored credential cannot be decrypted with the current key (was SORTIE_MC_CREDENTIALS_KEY_FILE changed?); set it again")

func (s *sealer) open(value, aad string) ([]byte, error) {
	b64, ok := strings.CutPrefix(value, sealVersion)
	if !ok {
		return nil, errUnreadable
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return nil, errUnreadable
	}
	n := s.aead.NonceSize()
	plain, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(aad))
	if err != nil {
		return nil, errUnreadable
	}
	return plain, nil
}
