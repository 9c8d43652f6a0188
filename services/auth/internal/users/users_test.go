package users

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadFileValidation(t *testing.T) {
	hash, err := HashPassword("correct-horse", 10)
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		content string
		want    string // "" means valid
	}{
		"valid":              {content: `[{"username":"alice","password_hash":"` + hash + `","role":"admin"},{"id":"u2","username":"bob","password_hash":"` + hash + `"}]`},
		"not JSON":           {content: `alice:secret`, want: "not a JSON list"},
		"empty list":         {content: `[]`, want: "lists no users"},
		"plain password":     {content: `[{"username":"alice","password_hash":"secret"}]`, want: "not a bcrypt hash"},
		"bad role":           {content: `[{"username":"alice","password_hash":"` + hash + `","role":"root"}]`, want: "must be admin or user"},
		"bad username":       {content: `[{"username":"../alice","password_hash":"` + hash + `"}]`, want: "username"},
		"disabled duplicate": {content: `[{"username":"alice","password_hash":"` + hash + `","disabled":true},{"username":"alice","id":"x","password_hash":"` + hash + `"}]`, want: "appears twice"},
		"duplicate":          {content: `[{"username":"alice","password_hash":"` + hash + `"},{"username":"ALICE","id":"x","password_hash":"` + hash + `"}]`, want: "appears twice"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "users.json")
			os.WriteFile(path, []byte(tc.content), 0o600)
			s, err := LoadFile(path)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("LoadFile: %v", err)
				}
				if u, ok := s.ByID("alice"); !ok || u.Role != "admin" {
					t.Errorf("alice = %+v, want id defaulted to username", u)
				}
				if u, ok := s.ByID("u2"); !ok || u.Role != "user" {
					t.Errorf("bob = %+v, want role defaulted to user", u)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadFile error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	single, err := NewSingle("the-one-password")
	if err != nil {
		t.Fatal(err)
	}
	if u, err := single.Authenticate("ignored", "the-one-password"); err != nil || u.ID != SingleTenantUser {
		t.Errorf("single: %v, %v", u, err)
	}
	if _, err := single.Authenticate("", "the-one-password "); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("single, wrong password: %v", err)
	}
	hashed, _ := HashPassword("the-one-password", 10)
	fromHash, _ := NewSingle(hashed)
	if _, err := fromHash.Authenticate("", "the-one-password"); err != nil {
		t.Errorf("single from a bcrypt hash: %v", err)
	}
	if _, err := HashPassword(strings.Repeat("x", 73), 10); err == nil {
		t.Error("a password over bcrypt's 72 bytes was hashed (bcrypt would silently truncate it)")
	}
}

func TestDisabledUser(t *testing.T) {
	hash, err := HashPassword("correct-horse", 10)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "users.json")
	os.WriteFile(path, []byte(`[{"username":"alice","password_hash":"`+hash+`","role":"admin"},{"username":"bob","password_hash":"`+hash+`","disabled":true}]`), 0o600)
	s, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("bob", "correct-horse"); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("a disabled user logged in with the right password: %v", err)
	}
	if _, ok := s.ByID("bob"); ok {
		t.Error("ByID found a disabled user")
	}
	if roles := s.Roles(); len(roles) != 1 || roles["alice"] != "admin" {
		t.Errorf("Roles = %v, want only alice (admin)", roles)
	}
	if _, err := s.Authenticate("alice", "correct-horse"); err != nil {
		t.Errorf("an enabled user: %v", err)
	}
}

// A hash costlier than MaxCost would make every login (and every unknown
// username, through the dummy) seconds of CPU: refused at start.
func TestCostlyHashesRefused(t *testing.T) {
	costly := strings.Replace(seedHash, "$04$", "$15$", 1)
	if _, err := Parse([]byte(`[{"username":"alice","password_hash":"` + costly + `"}]`)); err == nil || !strings.Contains(err.Error(), "cost 15") {
		t.Errorf("users file with a cost-15 hash: %v", err)
	}
	if _, err := NewSingle(costly); err == nil || !strings.Contains(err.Error(), "cost 15") {
		t.Errorf("single password as a cost-15 hash: %v", err)
	}
	if _, err := Parse([]byte(`[{"username":"alice","password_hash":"` + seedHash + `"}]`)); err != nil {
		t.Errorf("a cost-4 hash: %v", err)
	}
}
