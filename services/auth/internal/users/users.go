// Package users checks passwords: one password (single-tenant mode) or a
// list of users with bcrypt hashes (multi-user mode). Every attempt costs
// one bcrypt comparison, whether or not the user exists, so response times
// do not reveal which usernames are real.
package users

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"sortie.dev/services/kit/authn"
)

// User is someone who can log in, unless Disabled: a disabled user stays
// in the file (their id stays taken) but cannot log in, no service may act
// for them, and their tokens stop working.
type User struct {
	ID           string     `json:"id"`
	Username     string     `json:"username"`
	PasswordHash string     `json:"password_hash"`
	Role         authn.Role `json:"role"`
	Disabled     bool       `json:"disabled,omitempty"`
}

// ErrInvalidCredentials is a wrong password or an unknown user; callers
// must not tell the two apart.
var ErrInvalidCredentials = errors.New("invalid username or password")

// SingleTenantUser is who logs in with the single password. Its id and name
// match what the original server reports, so existing clients see the same
// user.
const SingleTenantUser = "default"

// Store holds the users of one mode. It is immutable; reload by building a
// new one.
type Store struct {
	byName map[string]*User
	byID   map[string]*User
	single bool
	dummy  []byte // hash compared against when the user is unknown
}

// HashPassword returns a bcrypt hash of password at cost.
func HashPassword(password string, cost int) (string, error) {
	if len(password) > 72 {
		return "", errors.New("password is longer than bcrypt's 72-byte limit")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

func isBcrypt(s string) bool {
	_, err := bcrypt.Cost([]byte(s))
	return err == nil
}

// NewSingle is single-tenant mode. password may be plain text (from a
// Secret) or a bcrypt hash; plain text is hashed here so that checking it
// costs the same as in multi-user mode and it does not sit in memory.
func NewSingle(password string) (*Store, error) {
	hash := password
	if !isBcrypt(password) {
		var err error
		if hash, err = HashPassword(password, bcrypt.DefaultCost); err != nil {
			return nil, err
		}
	} else if c := hashCost(hash); c > MaxCost {
		return nil, fmt.Errorf("the password hash has bcrypt cost %d, more than %d (every login would take seconds)", c, MaxCost)
	}
	u := &User{ID: SingleTenantUser, Username: SingleTenantUser, PasswordHash: hash, Role: authn.RoleAdmin}
	return newStore([]*User{u}, true)
}

var usernamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// MaxCost is the highest bcrypt cost accepted: each login costs one
// comparison at the highest cost in the store (unknown users included), and
// at cost 15 and above that is seconds of CPU per try, which anyone can
// ask for.
const MaxCost = 14

// LoadFile reads a multi-user file: a JSON list of users. id defaults to the
// username and role to "user"; "disabled": true keeps a user out; every
// problem in the file is reported.
func LoadFile(path string) (*Store, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read users file: %w", err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	return s, nil
}

// Parse is LoadFile on the file's content.
func Parse(data []byte) (*Store, error) {
	list, err := parseList(data)
	if err != nil {
		return nil, err
	}
	return newStore(list, false)
}

// parseList decodes and checks each entry; newStore checks the entries
// against each other.
func parseList(data []byte) ([]*User, error) {
	var list []*User
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("not a JSON list of users: %w", err)
	}
	var problems []string
	for i, u := range list {
		if u == nil {
			problems = append(problems, fmt.Sprintf("entry %d is null", i))
			continue
		}
		u.Username = strings.TrimSpace(u.Username)
		if u.ID == "" {
			u.ID = u.Username
		}
		if u.Role == "" {
			u.Role = authn.RoleUser
		}
		switch {
		case !usernamePattern.MatchString(u.Username):
			problems = append(problems, fmt.Sprintf("entry %d: username %q must be 1-64 letters, digits, '.', '_', '@' or '-'", i, u.Username))
		case !isBcrypt(u.PasswordHash):
			problems = append(problems, fmt.Sprintf("user %q: password_hash is not a bcrypt hash (make one with `auth hash-password`)", u.Username))
		case hashCost(u.PasswordHash) > MaxCost:
			problems = append(problems, fmt.Sprintf("user %q: password_hash has bcrypt cost %d, more than %d (every login would take seconds); make one with `auth hash-password`", u.Username, hashCost(u.PasswordHash), MaxCost))
		case u.Role != authn.RoleAdmin && u.Role != authn.RoleUser:
			problems = append(problems, fmt.Sprintf("user %q: role %q must be admin or user", u.Username, u.Role))
		}
	}
	if len(list) == 0 {
		problems = append(problems, "it lists no users")
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return list, nil
}

func hashCost(hash string) int {
	c, _ := bcrypt.Cost([]byte(hash))
	return c
}

func newStore(list []*User, single bool) (*Store, error) {
	s := &Store{byName: map[string]*User{}, byID: map[string]*User{}, single: single}
	cost := bcrypt.DefaultCost
	for _, u := range list {
		if _, dup := s.byName[strings.ToLower(u.Username)]; dup {
			return nil, fmt.Errorf("username %q appears twice", u.Username)
		}
		if _, dup := s.byID[u.ID]; dup {
			return nil, fmt.Errorf("user id %q appears twice", u.ID)
		}
		s.byName[strings.ToLower(u.Username)] = u
		s.byID[u.ID] = u
		if c, err := bcrypt.Cost([]byte(u.PasswordHash)); err == nil && c > cost {
			cost = c
		}
	}
	// The dummy must cost what a real user's hash costs.
	dummy, err := bcrypt.GenerateFromPassword([]byte("sortie-dummy-password"), cost)
	if err != nil {
		return nil, fmt.Errorf("make dummy hash: %w", err)
	}
	s.dummy = dummy
	return s, nil
}

// SingleTenant reports whether this is the one-password store.
func (s *Store) SingleTenant() bool { return s.single }

// Authenticate checks a username and password. In single-tenant mode the
// username is ignored. Usernames match without regard to case. A disabled
// user gets the answer of a wrong password after the same comparison, so
// neither the answer nor its time tells that the account exists.
func (s *Store) Authenticate(username, password string) (*User, error) {
	var u *User
	if s.single {
		u = s.byID[SingleTenantUser]
	} else {
		u = s.byName[strings.ToLower(strings.TrimSpace(username))]
	}
	if u == nil {
		// Same work as a real comparison, then the same answer.
		_ = bcrypt.CompareHashAndPassword(s.dummy, []byte(password))
		return nil, ErrInvalidCredentials
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(password)) != nil || u.Disabled {
		return nil, ErrInvalidCredentials
	}
	return u, nil
}

// ByID finds a current user by id: one who is in the store and not
// disabled. A service may act only for them.
func (s *Store) ByID(id string) (*User, bool) {
	u, ok := s.byID[id]
	if !ok || u.Disabled {
		return nil, false
	}
	return u, true
}

// Roles maps every current user's id to their role: what auth publishes
// for the other services' verifiers.
func (s *Store) Roles() map[string]authn.Role {
	m := make(map[string]authn.Role, len(s.byID))
	for id, u := range s.byID {
		if !u.Disabled {
			m[id] = u.Role
		}
	}
	return m
}
