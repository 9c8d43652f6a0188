package e2e

import (
	"os"
	"testing"
)

// Single-password mode: a second platform, started the same way with no
// users file, logs in with the password alone.
func TestSinglePasswordPlatform(t *testing.T) {
	p, err := startPlatform(false)
	if err != nil {
		if p != nil {
			p.stop()
		}
		t.Fatalf("the single-password platform: %v", err)
	}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			p.dumpLog(os.Stderr)
		} else {
			_ = os.RemoveAll(p.state)
		}
	})
	u := newUser(t)
	u.base = p.url
	if a := u.do("POST", "/api/auth/login", map[string]string{"password": "not it"}); a.status != 401 || a.code() != "invalid_credentials" {
		t.Errorf("a wrong password: %d %s", a.status, a.body)
	}
	var st authStatus
	u.do("GET", "/api/auth/status", nil).decode(t, &st)
	if !st.AuthRequired || st.AuthMode != "single_tenant" {
		t.Errorf("auth status %+v, want single_tenant", st)
	}
	admin := loginAt(t, p, p.url, "")
	var list []workspace
	if a := admin.do("GET", "/api/workspaces", nil); a.status != 200 {
		t.Errorf("workspaces in single-password mode: %d", a.status)
	} else if a.decode(t, &list); len(list) == 0 || list[0].ID != defaultWS {
		t.Errorf("workspaces: %+v", list)
	}
}
