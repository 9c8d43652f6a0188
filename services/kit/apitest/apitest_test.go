package apitest

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestReadDecodeCode(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Test", "yes")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"name is required","code":"bad_request"}`))
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	r := Read(t, resp)
	if r.Status != 400 || r.Header.Get("X-Test") != "yes" || r.Code(t) != "bad_request" {
		t.Errorf("got %d %v %s", r.Status, r.Header, r.Body)
	}
}
