// Package apitest is what the HTTP tests of every service share: an answer
// read whole, decoded as JSON, and checked for the {"error","code"} shape
// every Sortie error has.
package apitest

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
)

// Response is an HTTP answer read whole.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Read reads and closes resp's body.
func Read(t testing.TB, resp *http.Response) Response {
	t.Helper()
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
}

// Decode unmarshals the body into v, failing the test when it is not JSON.
func (r Response) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("response %d is not JSON: %v: %s", r.Status, err, r.Body)
	}
}

// Code checks the error shape and returns its code.
func (r Response) Code(t testing.TB) string {
	t.Helper()
	var e struct{ Error, Code string }
	r.Decode(t, &e)
	if e.Error == "" || e.Code == "" {
		t.Fatalf("error without error or code: %d %s", r.Status, r.Body)
	}
	return e.Code
}

// Object decodes the body as a JSON object.
func (r Response) Object(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	r.Decode(t, &m)
	return m
}
