// Package secrets seals the values users mark as secret in library items,
// in the original server's format, so that a repository (and its remote)
// never holds them in plaintext.
//
// A user writes <encrypted>value</encrypted>; the stored form is
// <encrypted v="1">BASE64(nonce ‖ AES-256-GCM ciphertext and tag)</encrypted>.
// Editors get the first form back, workspaces get the bare value.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"sortie.dev/services/kit/config"
)

// ErrNoKey means a value must be sealed but no key is configured.
var ErrNoKey = errors.New("no encryption key is configured (SORTIE_LIBRARY_ENCRYPTION_KEY_FILE), so secrets cannot be stored")

// DecryptionFailed replaces a value that cannot be opened when it is
// deployed, as the original server does.
const DecryptionFailed = "[DECRYPTION_FAILED]"

const nonceSize = 12

var (
	sealedTag = regexp.MustCompile(`<encrypted v="1">([A-Za-z0-9+/=\s]*)</encrypted>`)
	// sealedAt is sealedTag at the start of a string.
	sealedAt = regexp.MustCompile(`^<encrypted v="1">([A-Za-z0-9+/=\s]*)</encrypted>`)
)

// Sealer seals and opens values under one key. A nil *Sealer has no key:
// it opens nothing and refuses to seal.
type Sealer struct {
	aead cipher.AEAD
}

// New returns a Sealer for a 32-byte key.
func New(key []byte) (*Sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("encryption key: want 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("encryption key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("encryption key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// LoadKeyFile reads a key file holding 32 bytes as 64 hex characters or
// base64, the formats the original server accepts.
func LoadKeyFile(path string) (*Sealer, error) {
	s, err := config.ReadSecretFile(path)
	if err != nil {
		return nil, err
	}
	key, err := ParseKey(strings.TrimSpace(s))
	if err != nil {
		return nil, err
	}
	return New(key)
}

// ParseKey decodes a key written as 64 hex characters or as base64.
func ParseKey(s string) ([]byte, error) {
	if len(s) == 64 {
		if b, err := hex.DecodeString(s); err == nil {
			return b, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, errors.New("encryption key: want 32 bytes written as 64 hex characters or base64")
}

// Enabled reports whether a key is configured.
func (s *Sealer) Enabled() bool { return s != nil }

// SealValue seals one value and returns the tagged form.
func (s *Sealer) SealValue(plain string) (string, error) {
	if s == nil {
		return "", ErrNoKey
	}
	nonce := make([]byte, nonceSize, nonceSize+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	sealed := s.aead.Seal(nonce, nonce, []byte(plain), nil)
	return `<encrypted v="1">` + base64.StdEncoding.EncodeToString(sealed) + `</encrypted>`, nil
}

// OpenValue opens a value in the tagged sealed form. ok is false when v is
// not sealed; err is set when it is sealed but cannot be opened.
func (s *Sealer) OpenValue(v string) (plain string, ok bool, err error) {
	m := sealedTag.FindStringSubmatch(strings.TrimSpace(v))
	if m == nil || m[0] != strings.TrimSpace(v) {
		return v, false, nil
	}
	p, err := s.open(m[1])
	return p, true, err
}

func (s *Sealer) open(b64 string) (string, error) {
	if s == nil {
		return "", ErrNoKey
	}
	raw, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(b64), ""))
	if err != nil {
		return "", fmt.Errorf("sealed value is not base64: %w", err)
	}
	if len(raw) < nonceSize+s.aead.Overhead() {
		return "", errors.New("sealed value is too short")
	}
	plain, err := s.aead.Open(nil, raw[:nonceSize], raw[nonceSize:], nil)
	if err != nil {
		return "", errors.New("sealed value does not open with this key")
	}
	return string(plain), nil
}

// HasPlain reports whether text holds a value the user marked secret but
// that is not sealed yet.
func HasPlain(text string) bool {
	for _, t := range scan(text) {
		if t.kind == tokPlain {
			return true
		}
	}
	return false
}

// SealText seals every <encrypted>value</encrypted> in text. A value that
// previous (the stored version) already holds sealed keeps its old
// ciphertext, so saving an unchanged item does not rewrite it with a new
// nonce and make a commit out of nothing. A bare <encrypted> (the
// placeholder, see RestoreText) is left as it is.
func (s *Sealer) SealText(text, previous string) (string, error) {
	if !HasPlain(text) {
		return text, nil
	}
	if s == nil {
		return "", ErrNoKey
	}
	known := s.sealedValues(previous)
	var firstErr error
	out := replaceTokens(text, func(t token) string {
		if t.kind != tokPlain {
			return t.raw
		}
		if sealed, ok := known[t.value]; ok {
			return sealed
		}
		sealed, err := s.SealValue(t.value)
		if err != nil && firstErr == nil {
			firstErr = err
		}
		// The same value twice in one text seals once: otherwise the next
		// save of the unchanged text would pick one ciphertext for both
		// and rewrite the file.
		known[t.value] = sealed
		return sealed
	})
	return out, firstErr
}

// SealEnv seals the values of env whose keys are listed in keys, reusing
// the ciphertext of previous where the value is unchanged. Values already
// sealed are kept as they are.
func (s *Sealer) SealEnv(env map[string]string, keys []string, previous map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(env))
	for k, v := range env {
		out[k] = v
	}
	for _, k := range keys {
		v, ok := out[k]
		if !ok {
			continue
		}
		// A value that did not open came back to the editor marked; saving
		// it again keeps the original sealed value.
		v = strings.TrimPrefix(v, DecryptionFailed)
		out[k] = v
		if sealedTag.MatchString(v) {
			continue
		}
		if old, ok := previous[k]; ok {
			if plain, sealed, err := s.OpenValue(old); sealed && err == nil && plain == v {
				out[k] = old
				continue
			}
		}
		sealed, err := s.SealValue(v)
		if err != nil {
			return nil, err
		}
		out[k] = sealed
	}
	return out, nil
}

// sealedValues maps each plaintext sealed in text to its sealed tag.
func (s *Sealer) sealedValues(text string) map[string]string {
	out := map[string]string{}
	for _, m := range sealedTag.FindAllStringSubmatch(text, -1) {
		if plain, err := s.open(m[1]); err == nil {
			out[plain] = m[0]
		}
	}
	return out
}

// OpenText turns every sealed value back into <encrypted>value</encrypted>
// for an editor. A value that does not open is left sealed, so saving the
// text again keeps it intact instead of losing it.
func (s *Sealer) OpenText(text string) string {
	if !strings.Contains(text, "<encrypted") {
		return text
	}
	return replaceTokens(text, func(t token) string {
		if t.kind != tokSealed {
			return t.raw
		}
		plain, err := s.open(t.value)
		if err != nil {
			return t.raw
		}
		return openTag + plain + closeTag
	})
}

// RevealText strips the tags down to the bare values, for deployment into
// a workspace. A sealed value that does not open becomes DecryptionFailed.
func (s *Sealer) RevealText(text string) string {
	if !strings.Contains(text, "<encrypted") {
		return text
	}
	return replaceTokens(text, func(t token) string {
		switch t.kind {
		case tokSealed:
			plain, err := s.open(t.value)
			if err != nil {
				return DecryptionFailed
			}
			return plain
		case tokPlain:
			return t.value
		default:
			return t.raw
		}
	})
}

// OpenEnv opens the sealed values of env for an editor or a workspace. A
// value that does not open becomes DecryptionFailed followed by the sealed
// form, as the original server answers.
func (s *Sealer) OpenEnv(env map[string]string) map[string]string {
	out := make(map[string]string, len(env))
	for k, v := range env {
		plain, sealed, err := s.OpenValue(v)
		switch {
		case !sealed:
			out[k] = v
		case err != nil:
			out[k] = DecryptionFailed + v
		default:
			out[k] = plain
		}
	}
	return out
}
