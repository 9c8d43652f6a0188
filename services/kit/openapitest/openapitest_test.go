package openapitest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"
)

// widgetSpec exercises the OpenAPI 3.1 features the project's spec relies
// on: a nullable field written as a type array, a path parameter, an error
// schema on a 4xx response, and a global security requirement (which must
// not get in the way of response validation).
const widgetSpec = `
openapi: 3.1.0
info:
  title: widgets
  version: "1"
security:
  - bearer: []
paths:
  /api/widgets:
    get:
      responses:
        "200":
          description: all widgets
          content:
            application/json:
              schema:
                type: array
                items: {$ref: "#/components/schemas/Widget"}
    post:
      responses:
        "201":
          description: created
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Widget"}
        "400":
          $ref: "#/components/responses/Error"
  /api/widgets/{id}:
    parameters:
      - name: id
        in: path
        required: true
        schema: {type: string}
    get:
      responses:
        "200":
          description: one widget
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Widget"}
        "404":
          $ref: "#/components/responses/Error"
    delete:
      responses:
        "204":
          description: deleted
  /api/widgets/{id}/events:
    parameters:
      - name: id
        in: path
        required: true
        schema: {type: string}
    get:
      responses:
        "200":
          description: a stream of changes
          content:
            text/event-stream:
              schema: {type: string}
  /api/gadgets:
    get:
      responses:
        "204":
          description: nothing
components:
  securitySchemes:
    bearer:
      type: http
      scheme: bearer
  responses:
    Error:
      description: an error
      content:
        application/json:
          schema: {$ref: "#/components/schemas/Error"}
  schemas:
    Widget:
      type: object
      required: [id, size, note]
      additionalProperties: false
      properties:
        id: {type: string}
        size: {type: integer, minimum: 1}
        note: {type: [string, "null"]}
    Error:
      type: object
      required: [error, code]
      additionalProperties: false
      properties:
        error: {type: string}
        code: {type: string}
`

func TestMain(m *testing.M) {
	// Keep gin's debug route listing out of the test output.
	gin.SetMode(gin.TestMode)
	os.Exit(m.Run())
}

// recorder is a testing.TB that records failures instead of failing, so a
// test can assert that a check fails. Everything else goes to the real t.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *recorder) failures() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errors...)
}

// fatals runs f in its own goroutine, as Fatalf ends the goroutine it runs on.
func (r *recorder) fatals(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}

func TestLoadRejectsBadSpecs(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"not yaml", "{", "parse spec"},
		{"unresolved ref", strings.Replace(widgetSpec, `schemas/Widget"}`, `schemas/Nope"}`, 1), "parse spec"},
		{"missing info", strings.Replace(widgetSpec, "info:", "x-info:", 1), "validate spec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			rec.fatals(func() { Load(rec, []byte(tt.doc)) })
			got := rec.failures()
			if len(got) != 1 || !strings.Contains(got[0], tt.want) {
				t.Errorf("Load failures = %q, want one containing %q", got, tt.want)
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	spec := Load(t, []byte(widgetSpec))
	tests := []struct {
		prefixes []string
		want     []string
	}{
		{nil, []string{
			"DELETE /api/widgets/{id}",
			"GET /api/gadgets",
			"GET /api/widgets",
			"GET /api/widgets/{id}",
			"GET /api/widgets/{id}/events",
			"POST /api/widgets",
		}},
		{[]string{"/api/gadgets"}, []string{"GET /api/gadgets"}},
		{[]string{"/api/widgets/"}, []string{
			"DELETE /api/widgets/{id}",
			"GET /api/widgets/{id}",
			"GET /api/widgets/{id}/events",
		}},
		{[]string{"/api/nothing"}, nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.prefixes, ","), func(t *testing.T) {
			got := spec.Routes(tt.prefixes...)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Routes(%q) mismatch (-want +got):\n%s", tt.prefixes, diff)
			}
		})
	}
}

func ok(c *gin.Context) { c.Status(http.StatusNoContent) }

func TestCheckRoutes(t *testing.T) {
	spec := Load(t, []byte(widgetSpec))
	prefixes := []string{"/api/widgets"}
	tests := []struct {
		name     string
		register func(e *gin.Engine)
		want     []string
	}{
		{
			name:     "agree",
			register: func(*gin.Engine) {},
		},
		{
			name: "route missing from spec",
			register: func(e *gin.Engine) {
				e.PUT("/api/widgets/:id", ok)
			},
			want: []string{"openapitest: gin serves PUT /api/widgets/{id}, which the spec does not declare"},
		},
		{
			name: "route outside prefixes",
			register: func(e *gin.Engine) {
				e.GET("/api/secret/*path", ok)
			},
			want: []string{"openapitest: gin serves GET /api/secret/{path}, which the spec does not declare"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := gin.New()
			e.GET("/healthz", ok) // ignored
			e.GET("/api/widgets", ok)
			e.POST("/api/widgets", ok)
			e.GET("/api/widgets/:id", ok)
			e.DELETE("/api/widgets/:id", ok)
			e.GET("/api/widgets/:id/events", ok)
			tt.register(e)

			rec := &recorder{TB: t}
			spec.CheckRoutes(rec, e.Routes(), prefixes, "/healthz")
			if diff := cmp.Diff(tt.want, rec.failures()); diff != "" {
				t.Errorf("CheckRoutes failures mismatch (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("spec route not registered", func(t *testing.T) {
		e := gin.New()
		e.GET("/api/widgets", ok)
		e.GET("/api/widgets/:id", ok)
		e.DELETE("/api/widgets/:id", ok)
		e.GET("/api/widgets/:id/events", ok)

		rec := &recorder{TB: t}
		spec.CheckRoutes(rec, e.Routes(), prefixes)
		want := []string{"openapitest: spec declares POST /api/widgets, which gin does not serve"}
		if diff := cmp.Diff(want, rec.failures()); diff != "" {
			t.Errorf("CheckRoutes failures mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestClient(t *testing.T) {
	e := gin.New()
	// Each handler answers for one case below; the path says which.
	e.GET("/api/widgets/:id", func(c *gin.Context) {
		switch c.Param("id") {
		case "good":
			c.JSON(http.StatusOK, gin.H{"id": "good", "size": 3, "note": nil})
		case "noted":
			c.JSON(http.StatusOK, gin.H{"id": "noted", "size": 3, "note": "blue"})
		case "zero":
			c.JSON(http.StatusOK, gin.H{"id": "zero", "size": 0, "note": nil})
		case "numberNote":
			c.JSON(http.StatusOK, gin.H{"id": "numberNote", "size": 1, "note": 5})
		case "extra":
			c.JSON(http.StatusOK, gin.H{"id": "extra", "size": 1, "note": nil, "colour": "red"})
		case "missing":
			c.JSON(http.StatusNotFound, gin.H{"error": "widget not found", "code": "not_found"})
		case "badError":
			c.JSON(http.StatusNotFound, gin.H{"message": "widget not found"})
		case "teapot":
			c.JSON(http.StatusTeapot, gin.H{"error": "short and stout", "code": "teapot"})
		case "text":
			c.String(http.StatusOK, `{"id": "text", "size": 1, "note": null}`)
		}
	})
	e.DELETE("/api/widgets/:id", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	e.GET("/api/widgets/:id/events", func(c *gin.Context) {
		c.Header("Content-Type", "text/event-stream")
		c.String(http.StatusOK, "data: {}\n\n")
	})
	e.GET("/api/unknown", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	e.PUT("/api/gadgets", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)

	spec := Load(t, []byte(widgetSpec))
	tests := []struct {
		method, path string
		// wantErr lists substrings of the one reported failure; empty
		// means the response must pass.
		wantErr []string
	}{
		{"GET", "/api/widgets/good", nil},
		{"GET", "/api/widgets/noted", nil},
		{"GET", "/api/widgets/missing", nil},
		{"DELETE", "/api/widgets/x", nil},
		{"GET", "/api/widgets/x/events", nil},
		{"GET", "/api/widgets/zero", []string{"GET /api/widgets/zero -> 200", "doesn't match schema", "size"}},
		{"GET", "/api/widgets/numberNote", []string{"GET /api/widgets/numberNote -> 200", "doesn't match schema", "note"}},
		{"GET", "/api/widgets/extra", []string{"GET /api/widgets/extra -> 200", "doesn't match schema", "colour"}},
		{"GET", "/api/widgets/badError", []string{"GET /api/widgets/badError -> 404", "doesn't match schema"}},
		{"GET", "/api/widgets/teapot", []string{"GET /api/widgets/teapot -> 418", "status is not supported"}},
		{"GET", "/api/widgets/text", []string{"GET /api/widgets/text -> 200", "text/plain"}},
		{"GET", "/api/unknown", []string{"GET /api/unknown -> 204", "not in the spec"}},
		{"PUT", "/api/gadgets", []string{"PUT /api/gadgets -> 204", "not in the spec"}},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			// The unvalidated answer is what the caller must still see.
			want := fetch(t, srv.Client(), tt.method, srv.URL+tt.path)

			rec := &recorder{TB: t}
			got := fetch(t, spec.Client(rec, srv.Client()), tt.method, srv.URL+tt.path)
			if got != want {
				t.Errorf("body through the validating client = %q, want %q", got, want)
			}

			failures := rec.failures()
			if len(tt.wantErr) == 0 {
				if len(failures) != 0 {
					t.Errorf("valid response reported: %q", failures)
				}
				return
			}
			if len(failures) != 1 {
				t.Fatalf("failures = %q, want exactly one", failures)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(failures[0], w) {
					t.Errorf("failure %q does not mention %q", failures[0], w)
				}
			}
		})
	}
}

func fetch(t *testing.T, c *http.Client, method, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, body)
}
