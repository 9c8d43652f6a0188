package users

import (
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"sortie.dev/services/kit/authn"
)

// A hash of "correct-horse" at bcrypt's minimum cost, so seeds parse fast.
const seedHash = "$2a$04$usRtsJ9EF0c1iRn9VSmgEOdd0FsHsrvAeortCA..Fc3l/6Qir1tz2"

// FuzzParse: a users file never panics the parser, and what it accepts is
// what the rest of the service relies on: valid usernames, known roles,
// bcrypt hashes no costlier than MaxCost, ids and names without twins.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`[{"username":"alice","password_hash":"` + seedHash + `","role":"admin"},{"id":"u2","username":"bob","password_hash":"` + seedHash + `"}]`,
		`[{"username":"bob","password_hash":"` + seedHash + `","disabled":true}]`,
		`[{"username":"alice","password_hash":"` + strings.Replace(seedHash, "$04$", "$31$", 1) + `"}]`,
		`[{"username":"alice","password_hash":"secret"}]`,
		`[{"username":"../alice","password_hash":"` + seedHash + `"}]`,
		`[{"username":"alice","password_hash":"` + seedHash + `"},{"username":"ALICE","id":"x","password_hash":"` + seedHash + `"}]`,
		`[{"username":"a","id":"b","password_hash":"` + seedHash + `"},{"username":"b","password_hash":"` + seedHash + `"}]`,
		`[null]`, `[]`, `{}`, `null`, ``, `[{"role":7}]`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := parseList(data)
		if err != nil {
			return
		}
		for _, u := range list {
			c, err := bcrypt.Cost([]byte(u.PasswordHash))
			if err != nil || c > MaxCost || !usernamePattern.MatchString(u.Username) || (u.Role != authn.RoleAdmin && u.Role != authn.RoleUser) || u.ID == "" {
				t.Fatalf("accepted %+v (cost %d, %v)", u, c, err)
			}
			if c > 6 {
				return // a valid but slow hash: building the store would only measure bcrypt
			}
		}
		s, err := newStore(list, false)
		if err != nil {
			return
		}
		for _, u := range list {
			if got, ok := s.byID[u.ID]; !ok || got != u {
				t.Fatalf("user %q is not found by its id", u.ID)
			}
			if got := s.byName[strings.ToLower(u.Username)]; got != u {
				t.Fatalf("user %q is not found by its name", u.Username)
			}
		}
	})
}
