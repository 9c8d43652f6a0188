package workspaces

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"sortie.dev/services/kit/authn"
)

// A delegated token the operator refuses is dropped and the call made
// once more with a fresh one from auth: after a user's role changes, the
// operator refuses the old token (its role is stale) and the new one
// carries the current role.
func TestRefusedDelegatedTokenIsRenewedOnce(t *testing.T) {
	var mu sync.Mutex
	issued := 0
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Subject string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		issued++
		n := issued
		mu.Unlock()
		_ = json.NewEncoder(w).Encode(authn.TokenResponse{AccessToken: fmt.Sprintf("%s-%d", req.Subject, n), TokenType: "Bearer", ExpiresIn: 300})
	}))
	defer auth.Close()
	var seen []string
	current := "alice-2" // the operator accepts only the newest token
	op := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		want := "Bearer " + current
		mu.Unlock()
		if r.Header.Get("Authorization") != want {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"the token's user no longer exists or its role changed","code":"unauthorized"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(Workspace{ID: "w1", Status: "ready"})
	}))
	defer op.Close()

	c := New(op.URL, authn.NewServiceTokenSource(auth.URL, "mission-control", "secret", nil))
	ws, err := c.As("alice").Get(t.Context(), "w1")
	if err != nil || ws.ID != "w1" {
		t.Fatalf("Get after a refused token: %v, %v; want the workspace", ws, err)
	}
	if len(seen) != 2 || seen[0] != "Bearer alice-1" || seen[1] != "Bearer alice-2" {
		t.Fatalf("the operator saw %q; want the cached token, then one fresh token", seen)
	}

	// A token that stays refused is not retried forever: one retry, then
	// the 401 reaches the caller.
	mu.Lock()
	current, seen = "nobody", nil
	mu.Unlock()
	if _, err := c.As("alice").Get(t.Context(), "w1"); err == nil {
		t.Fatal("a call the operator keeps refusing succeeded")
	}
	if len(seen) != 2 {
		t.Fatalf("the operator saw %d calls for a refused user; want 2 (one retry)", len(seen))
	}
}
