package apierror

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

type loginBody struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Remember bool   `json:"remember"`
}

func TestDecodeJSON(t *testing.T) {
	tests := map[string]struct {
		body        string
		contentType string
		limit       int64
		wantStatus  int
		wantCode    string
		wantMsg     string
	}{
		"valid":             {body: `{"username":"a","password":"b","extra":1}`, contentType: "application/json; charset=utf-8"},
		"no content type":   {body: `{"password":"b"}`},
		"empty":             {body: ``, wantStatus: 400, wantCode: CodeInvalidJSON, wantMsg: "empty"},
		"malformed":         {body: `{"password":`, wantStatus: 400, wantCode: CodeInvalidJSON, wantMsg: "not valid JSON"},
		"syntax":            {body: `{password: 1}`, wantStatus: 400, wantCode: CodeInvalidJSON, wantMsg: "not valid JSON"},
		"wrong type":        {body: `{"password": 5}`, wantStatus: 400, wantCode: CodeInvalidJSON, wantMsg: `field "password" must be a string, not number`},
		"wrong bool":        {body: `{"remember": "yes"}`, wantStatus: 400, wantCode: CodeInvalidJSON, wantMsg: `field "remember" must be a boolean`},
		"array not object":  {body: `[1,2]`, wantStatus: 400, wantCode: CodeInvalidJSON, wantMsg: "must be an object, not array"},
		"trailing data":     {body: `{"password":"b"} {"x":1}`, wantStatus: 400, wantCode: CodeInvalidJSON, wantMsg: "single JSON value"},
		"too large":         {body: `{"password":"` + strings.Repeat("x", 200) + `"}`, limit: 64, wantStatus: 413, wantCode: CodeBodyTooLarge},
		"form content type": {body: `password=x`, contentType: "application/x-www-form-urlencoded", wantStatus: 415, wantCode: CodeUnsupportedMedia},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tc.body))
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			if tc.limit > 0 {
				r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, tc.limit)
			}
			var v loginBody
			err := DecodeJSON(r, &v)
			if tc.wantStatus == 0 {
				if err != nil {
					t.Fatalf("DecodeJSON: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("DecodeJSON error = %v, want *Error", err)
			}
			if e.Status != tc.wantStatus || e.Code != tc.wantCode || !strings.Contains(e.Message, tc.wantMsg) {
				t.Errorf("got %d %s %q, want %d %s containing %q", e.Status, e.Code, e.Message, tc.wantStatus, tc.wantCode, tc.wantMsg)
			}
		})
	}
}

func TestRespond(t *testing.T) {
	gin.SetMode(gin.TestMode)
	tests := map[string]struct {
		err        error
		wantStatus int
		wantBody   string
		wantRetry  string
	}{
		"retry after":       {err: New(429, CodeRateLimited, "slow down").WithRetryAfter(1500 * time.Millisecond), wantStatus: 429, wantBody: `{"code":"rate_limited","error":"slow down"}`, wantRetry: "2"},
		"storage full":      {err: fmt.Errorf("create: %w", StorageFull("cannot create the mission")), wantStatus: 503, wantRetry: "30"},
		"api error":         {err: NotFound("mission %s not found", "m1"), wantStatus: 404, wantBody: `{"code":"not_found","error":"mission m1 not found"}`},
		"wrapped api error": {err: errors.Join(errors.New("ctx"), Forbidden("no")), wantStatus: 403, wantBody: `{"code":"forbidden","error":"no"}`},
		"plain error":       {err: errors.New("redis: connection refused"), wantStatus: 500, wantBody: `{"code":"internal","error":"internal server error"}`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w := httptest.NewRecorder()
			c, _ := gin.CreateTestContext(w)
			Respond(c, tc.err)
			if w.Code != tc.wantStatus {
				t.Errorf("status = %d, want %d", w.Code, tc.wantStatus)
			}
			var got, want any
			_ = json.Unmarshal(w.Body.Bytes(), &got)
			_ = json.Unmarshal([]byte(tc.wantBody), &want)
			if got := w.Header().Get("Retry-After"); got != tc.wantRetry {
				t.Errorf("Retry-After = %q, want %q", got, tc.wantRetry)
			}
			if gb, _ := json.Marshal(got); tc.wantBody != "" && string(gb) != tc.wantBody {
				t.Errorf("body = %s, want %s", w.Body.String(), tc.wantBody)
			}
			if tc.wantStatus == 500 && len(c.Errors) != 1 {
				t.Errorf("internal error was not recorded on the context for the log")
			}
		})
	}
}
