package httpapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"sortie.dev/services/kit/apierror"
)

// request is a POST as the server hands it to a handler: the body behind
// the server's limit (64 KiB for auth).
func request(contentType, body, authorization string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/api/auth/x", strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 64<<10)
	return r
}

// clientError checks that a decoder's error is one a client may see: an
// *apierror.Error with a 4xx status and a code.
func clientError(t *testing.T, err error) {
	t.Helper()
	var e *apierror.Error
	if !errors.As(err, &e) || e.Status < 400 || e.Status > 499 || e.Code == "" || e.Message == "" {
		t.Fatalf("decoder error %T %v is not a 4xx API error", err, err)
	}
}

// FuzzDecodeLogin: any login body decodes or is a clear 4xx, never a panic.
func FuzzDecodeLogin(f *testing.F) {
	for _, seed := range [][2]string{
		{"application/json", `{"username":"alice","password":"pw"}`},
		{"application/json; charset=utf-8", `{"password":"pw"}`},
		{"application/json", `{"password":12}`},
		{"application/json", `{"password":"a"}{"password":"b"}`},
		{"application/json", `["password"]`},
		{"application/json", `null`},
		{"application/json", `{"username":"\u0000\ud800","password":"\"\\"}`},
		{"text/plain", `{"password":"x"}`},
		{"", `{"password":"x"}`},
		{"application/json", strings.Repeat(`{"a":`, 10000)},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, contentType, body string) {
		if _, err := decodeLogin(request(contentType, body, "")); err != nil {
			clientError(t, err)
		}
	})
}

// FuzzDecodeTokenRequest: JSON, form and HTTP Basic credentials decode to
// a client id and secret, or a clear 4xx, never a panic.
func FuzzDecodeTokenRequest(f *testing.F) {
	for _, seed := range [][3]string{
		{"application/json", `{"grant_type":"client_credentials","client_id":"mission-control","client_secret":"s"}`, ""},
		{"application/x-www-form-urlencoded", `grant_type=client_credentials&client_id=mission-control&client_secret=s&subject=u-alice`, ""},
		{"application/x-www-form-urlencoded", `%zz`, ""},
		{"application/x-www-form-urlencoded; charset=utf-8", `client_id=a&client_id=b&client_secret=`, ""},
		{"application/json", `{}`, "Basic bWlzc2lvbi1jb250cm9sOnNlY3JldA=="},
		{"application/json", `{}`, "Basic !!!"},
		{"application/json", `{"grant_type":"password","client_id":"a","client_secret":"b"}`, ""},
		{"application/json", `{"client_id":1}`, ""},
		{"multipart/form-data; boundary=x", "--x\r\n", ""},
	} {
		f.Add(seed[0], seed[1], seed[2])
	}
	f.Fuzz(func(t *testing.T, contentType, body, authorization string) {
		req, err := decodeTokenRequest(request(contentType, body, authorization))
		if err != nil {
			clientError(t, err)
			return
		}
		if req.ClientID == "" || req.ClientSecret == "" || (req.GrantType != "" && req.GrantType != "client_credentials") {
			t.Fatalf("decoded %+v", req)
		}
	})
}
