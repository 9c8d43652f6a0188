package httpapi

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"sortie.dev/services/kit/apierror"
	"sortie.dev/services/mission-control/internal/backend"
	"sortie.dev/services/mission-control/internal/config"
	"sortie.dev/services/mission-control/internal/events"
)

// request is a POST with body as the kit server hands it to a handler:
// the 1 MiB body limit applied.
func request(body string, contentType string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 1<<20)
	return r
}

// clientError checks that err is nil or a 4xx *apierror.Error: bad input
// is never a 500.
func clientError(t *testing.T, err error) *apierror.Error {
	t.Helper()
	if err == nil {
		return nil
	}
	var ae *apierror.Error
	if !errors.As(err, &ae) || ae.Status < 400 || ae.Status > 499 || ae.Code == "" || ae.Message == "" {
		t.Fatalf("error %v (%T) is not a 4xx API error", err, err)
	}
	return ae
}

func TestDecoders(t *testing.T) {
	tests := map[string]struct {
		decode   func(*http.Request) error
		body     string
		wantCode string
	}{
		"create: empty":           {decode: create, body: ""},
		"create: empty object":    {decode: create, body: "{}"},
		"create: fields":          {decode: create, body: `{"title":"t","backend":"codex","model_effort":"high","workspace_id":"w"}`},
		"create: unknown backend": {decode: create, body: `{"backend":"gpt"}`, wantCode: "bad_request"},
		"create: bad effort":      {decode: create, body: `{"model_effort":"max"}`, wantCode: "bad_request"},
		"create: long title":      {decode: create, body: `{"title":"` + strings.Repeat("t", maxTitle+1) + `"}`, wantCode: "bad_request"},
		"create: long agent":      {decode: create, body: `{"agent":"` + strings.Repeat("a", maxName+1) + `"}`, wantCode: "bad_request"},
		"create: not json":        {decode: create, body: `{`, wantCode: "invalid_json"},
		"message: ok":             {decode: message(10), body: `{"content":"hello"}`},
		"message: blank":          {decode: message(10), body: `{"content":"  "}`, wantCode: "bad_request"},
		"message: too long":       {decode: message(10), body: `{"content":"hello world"}`, wantCode: "message_too_large"},
		"message: over the body":  {decode: message(10), body: `{"content":"` + strings.Repeat("x", 2<<20) + `"}`, wantCode: "body_too_large"},
		"message: wrong type":     {decode: message(10), body: `{"content":5}`, wantCode: "invalid_json"},
		"status: ok":              {decode: status, body: `{"status":"completed"}`},
		"status: unknown":         {decode: status, body: `{"status":"done"}`, wantCode: "bad_request"},
		"status: none":            {decode: status, body: ``, wantCode: "invalid_json"},
		"resume: none":            {decode: resume, body: ``},
		"resume: skip":            {decode: resume, body: `{"skip_message":true}`},
		"resume: wrong type":      {decode: resume, body: `{"skip_message":"yes"}`, wantCode: "invalid_json"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ae := clientError(t, tc.decode(request(tc.body, "application/json")))
			if got := ""; ae != nil {
				got = ae.Code
				if got != tc.wantCode {
					t.Errorf("code %q (%s), want %q", got, ae.Message, tc.wantCode)
				}
			} else if tc.wantCode != "" {
				t.Errorf("accepted, want %q", tc.wantCode)
			}
		})
	}
}

func create(r *http.Request) error { _, err := DecodeCreate(r); return err }
func status(r *http.Request) error { _, err := DecodeStatus(r); return err }
func resume(r *http.Request) error { _, err := DecodeResume(r); return err }
func message(max int) func(*http.Request) error {
	return func(r *http.Request) error { _, err := DecodeMessage(r, max); return err }
}

func TestPaging(t *testing.T) {
	tests := map[string]struct {
		limit, offset         string
		wantLimit, wantOffset int
		wantErr               bool
	}{
		"defaults":           {wantLimit: 50},
		"given":              {limit: "10", offset: "20", wantLimit: 10, wantOffset: 20},
		"clamped":            {limit: "100000", wantLimit: 500},
		"clamped overflow":   {limit: "99999999999999999999", offset: "99999999999999999999", wantLimit: 500, wantOffset: maxOffset},
		"zero":               {limit: "0", wantErr: true},
		"negative":           {limit: "-1", wantErr: true},
		"negative overflow":  {limit: "-99999999999999999999", wantErr: true},
		"not a number":       {limit: "ten", wantErr: true},
		"fraction":           {limit: "1.5", wantErr: true},
		"negative offset":    {offset: "-1", wantErr: true},
		"offset not integer": {offset: "1e3", wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l, o, err := Paging(tc.limit, tc.offset, 50, 500)
			clientError(t, err)
			if (err != nil) != tc.wantErr || err == nil && (l != tc.wantLimit || o != tc.wantOffset) {
				t.Errorf("Paging = %d, %d, %v", l, o, err)
			}
		})
	}
}

// FuzzCreateMission: whatever the body, DecodeCreate never panics, refuses
// only with a 4xx, and what it accepts is a mission that can be created.
func FuzzCreateMission(f *testing.F) {
	for _, s := range []string{"", "{}", `{"title":"t","backend":"codex","model_effort":"high"}`, `{"backend":" amp "}`, `{"model_effort":""}`,
		`{"title":null}`, `[]`, `{"workspace_id":"00000000-0000-0000-0000-000000000000","agent":"x","model_override":"m"}`, "\xff"} {
		f.Add(s, "application/json")
	}
	f.Add(`{}`, "text/plain")
	f.Fuzz(func(t *testing.T, body, contentType string) {
		req, err := DecodeCreate(request(body, contentType))
		if clientError(t, err) != nil {
			return
		}
		if b := nonEmpty(req.Backend); b != nil && !config.IsBackend(*b) {
			t.Fatalf("accepted backend %q", *b)
		}
		if e := nonEmpty(req.ModelEffort); e != nil {
			if _, err := backend.ParseEffort(*e); err != nil {
				t.Fatalf("accepted effort %q", *e)
			}
		}
		if req.Title != nil && len(*req.Title) > maxTitle || req.Agent != nil && len(*req.Agent) > maxName {
			t.Fatal("accepted an over-long field")
		}
	})
}

// FuzzMessage: DecodeMessage never panics, refuses only with a 4xx, and
// what it accepts is within the size limit and not blank.
func FuzzMessage(f *testing.F) {
	for _, s := range []string{`{"content":"hi"}`, `{"content":"hi","agent":null,"mission_id":"m"}`, `{"content":""}`, `{"content":"\u0000"}`,
		`{"content":"` + strings.Repeat("é", 40) + `"}`, `{"content":["x"]}`, `{"content":"a"} {}`, ``} {
		f.Add(s, uint16(64))
	}
	f.Fuzz(func(t *testing.T, body string, max uint16) {
		limit := int(max%1024) + 1
		req, err := DecodeMessage(request(body, "application/json"), limit)
		if clientError(t, err) != nil {
			return
		}
		if len(req.Content) > limit || strings.TrimSpace(req.Content) == "" {
			t.Fatalf("accepted content of %d bytes (limit %d): %q", len(req.Content), limit, req.Content)
		}
	})
}

// FuzzControlBodies: the control session's other bodies (status, resume)
// never panic and refuse only with a 4xx.
func FuzzControlBodies(f *testing.F) {
	for _, s := range []string{`{"status":"completed"}`, `{"status":"x"}`, `{"skip_message":true,"clean_workspace":false}`, ``, `null`, `{"status":1}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		st, err := DecodeStatus(request(body, "application/json"))
		if clientError(t, err) == nil && !st.Valid() {
			t.Fatalf("accepted status %q", st)
		}
		_, err = DecodeResume(request(body, "application/json"))
		clientError(t, err)
	})
}

// FuzzQueryParams: limit, offset, types and Last-Event-ID never panic, and
// what is accepted is within bounds.
func FuzzQueryParams(f *testing.F) {
	for _, s := range [][4]string{{"10", "0", "user_message,assistant_message", "1700000000000-0"}, {"", "", "", ""}, {"-1", "x", "bogus", "1-"},
		{"99999999999999999999", "99999999999999999999", " , ,error", "18446744073709551616-1"}} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, limit, offset, types, cursor string) {
		l, o, err := Paging(limit, offset, 1000, 1000)
		if clientError(t, err) == nil && (l < 1 || l > 1000 || o < 0 || o > maxOffset) {
			t.Fatalf("Paging(%q, %q) = %d, %d", limit, offset, l, o)
		}
		kinds, err := ParseKinds(types)
		if ae := clientError(t, err); ae != nil && len(ae.Message) > 512 {
			t.Fatalf("an error of %d bytes echoes the input", len(ae.Message))
		}
		for _, k := range kinds {
			if !k.Valid() {
				t.Fatalf("accepted kind %q", k)
			}
		}
		if events.ValidCursor(cursor) && events.CompareCursors(cursor, cursor) != 0 {
			t.Fatalf("cursor %q is not equal to itself", cursor)
		}
	})
}
