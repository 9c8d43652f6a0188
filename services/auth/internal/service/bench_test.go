package service_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// BenchmarkLogin is a whole login over loopback HTTP: the throttle's Try in
// Redis, one bcrypt comparison (cost 10), token signing, the throttle's Succeed.
// bcrypt dominates on purpose.
func BenchmarkLogin(b *testing.B) {
	a := startAuth(b, map[string]string{"SORTIE_AUTH_PASSWORD": adminPassword, "SORTIE_LOG_LEVEL": "error"})
	body, _ := json.Marshal(map[string]string{"password": adminPassword})
	client := &http.Client{}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Post(a.url+"/api/auth/login", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("login: %d", resp.StatusCode)
		}
	}
}

// BenchmarkVerifyEndpoint is GET /api/auth/verify over loopback HTTP:
// signature check, then one Redis round trip: the revocation check, with
// the principals (published by auth) fetched alongside when not cached.
func BenchmarkVerifyEndpoint(b *testing.B) {
	a := startAuth(b, map[string]string{"SORTIE_AUTH_PASSWORD": adminPassword, "SORTIE_LOG_LEVEL": "error"})
	tok := a.login("", adminPassword).Token
	client := &http.Client{}
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequest("GET", a.url+"/api/auth/verify", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("verify: %d", resp.StatusCode)
		}
	}
}
