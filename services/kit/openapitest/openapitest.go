// Package openapitest lets a service's tests prove that its gin router and
// the responses it sends agree with the project's one OpenAPI 3.1 document,
// api/openapi.yaml.
//
// A typical test loads the spec once, checks the route table, and then
// drives the service through a validating client:
//
//	spec := openapitest.Load(t, openAPIYAML) // the bytes of api/openapi.yaml
//	spec.CheckRoutes(t, engine.Routes(), []string{"/api/auth"}, "/healthz", "/readyz", "/metrics")
//	srv := httptest.NewServer(engine)
//	client := spec.Client(t, srv.Client())
package openapitest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/gin-gonic/gin"
)

// Spec is a parsed and validated OpenAPI document.
type Spec struct {
	doc    *openapi3.T
	router routers.Router
}

// Load parses and validates a spec document; t.Fatal on any problem.
func Load(t testing.TB, doc []byte) *Spec {
	t.Helper()
	s, err := parse(doc)
	if err != nil {
		t.Fatalf("openapitest: %v", err)
		return nil
	}
	return s
}

func parse(data []byte) (*Spec, error) {
	loader := openapi3.NewLoader()
	// The spec is one self-contained file; refusing external refs keeps a
	// test from reading the file system or the network behind our back.
	loader.IsExternalRefsAllowed = false
	doc, err := loader.LoadFromData(data)
	if err != nil {
		return nil, fmt.Errorf("parse spec: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("validate spec: %w", err)
	}
	// Paths in the spec are the full request paths and tests talk to
	// httptest servers on 127.0.0.1, so match on the path alone: with a
	// servers entry the router would also demand that server's host.
	doc.Servers = nil
	// The legacy router needs no servers entry and, unlike gorillamux, pulls
	// in no extra module.
	router, err := legacy.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("route spec: %w", err)
	}
	return &Spec{doc: doc, router: router}, nil
}

// Routes returns "METHOD /path" for every operation in the spec whose path
// starts with one of prefixes (every operation when there are none), with
// {param} style paths, sorted.
func (s *Spec) Routes(prefixes ...string) []string {
	var out []string
	for path, item := range s.doc.Paths.Map() {
		if !hasAnyPrefix(path, prefixes) {
			continue
		}
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

// CheckRoutes fails the test, listing each difference, unless the gin
// routes (engine.Routes()), converted from :param / *param to {param},
// equal the spec routes under prefixes. Routes whose path is in ignore
// (exact paths such as "/healthz") are skipped on both sides.
//
// Every gin route that is not ignored counts, even one outside prefixes:
// the ingress would never send it traffic, so it is a mistake either way.
func (s *Spec) CheckRoutes(t testing.TB, routes gin.RoutesInfo, prefixes []string, ignore ...string) {
	t.Helper()
	want := make(map[string]bool)
	for _, r := range s.Routes(prefixes...) {
		_, path, _ := strings.Cut(r, " ")
		if !slices.Contains(ignore, path) {
			want[r] = true
		}
	}
	got := make(map[string]bool)
	for _, r := range routes {
		path := specPath(r.Path)
		if !slices.Contains(ignore, path) && !slices.Contains(ignore, r.Path) {
			got[r.Method+" "+path] = true
		}
	}
	var diffs []string
	for r := range got {
		if !want[r] {
			diffs = append(diffs, fmt.Sprintf("gin serves %s, which the spec does not declare", r))
		}
	}
	for r := range want {
		if !got[r] {
			diffs = append(diffs, fmt.Sprintf("spec declares %s, which gin does not serve", r))
		}
	}
	slices.Sort(diffs)
	for _, d := range diffs {
		t.Errorf("openapitest: %s", d)
	}
}

// specPath converts a gin route path (/a/:id/*rest) to the spec's template
// syntax (/a/{id}/{rest}).
func specPath(path string) string {
	segs := strings.Split(path, "/")
	for i, seg := range segs {
		if len(seg) > 1 && (seg[0] == ':' || seg[0] == '*') {
			segs[i] = "{" + seg[1:] + "}"
		}
	}
	return strings.Join(segs, "/")
}

func hasAnyPrefix(path string, prefixes []string) bool {
	if len(prefixes) == 0 {
		return true
	}
	for _, p := range prefixes {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}

// Client wraps an http.Client so that every response that comes back is
// validated against the spec: the status code must be declared for the
// operation, and the content type and body must match what the spec says
// for it. A mismatch, or a request to a path or method the spec does not
// declare, is reported with t.Errorf naming the method, path and status;
// the response is still returned, its body readable by the caller.
//
// Requests are not validated: tests send malformed requests on purpose to
// check the 4xx answers. A nil base means a zero http.Client.
func (s *Spec) Client(t testing.TB, base *http.Client) *http.Client {
	c := &http.Client{}
	if base != nil {
		*c = *base
	}
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = &validatingTransport{spec: s, t: t, next: next}
	return c
}

type validatingTransport struct {
	spec *Spec
	t    testing.TB
	next http.RoundTripper
}

func (v *validatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := v.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if err := v.spec.validate(req, resp); err != nil {
		v.t.Errorf("openapitest: %s %s -> %d: %v", req.Method, req.URL.Path, resp.StatusCode, err)
	}
	return resp, nil
}

// validate checks resp against the operation req was routed to. It leaves
// resp.Body readable from the start whatever happens.
func (s *Spec) validate(req *http.Request, resp *http.Response) error {
	route, params, err := s.router.FindRoute(req)
	if err != nil {
		return fmt.Errorf("not in the spec: %w", err)
	}
	opts := &openapi3filter.Options{
		// An undeclared status is a contract break, not something to allow.
		IncludeResponseStatus: true,
		// ValidateResponse does not check security requirements today; the
		// no-op keeps a future kin-openapi from demanding credentials the
		// test client may deliberately not send.
		AuthenticationFunc: openapi3filter.NoopAuthenticationFunc,
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request:    req,
			PathParams: params,
			Route:      route,
			Options:    opts,
		},
		Status:  resp.StatusCode,
		Header:  resp.Header,
		Options: opts,
	}

	if isEventStream(resp.Header.Get("Content-Type")) {
		// An SSE body never ends while the test reads it, so check the
		// status and the content type and leave the stream alone.
		opts.ExcludeResponseBody = true
		if err := openapi3filter.ValidateResponse(req.Context(), input); err != nil {
			return err
		}
		return checkDeclaredContentType(route, resp)
	}

	data, err := readAndRestore(resp)
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	input.SetBodyBytes(data)
	return openapi3filter.ValidateResponse(req.Context(), input)
}

// readAndRestore reads the whole body and puts an equivalent one back so
// the caller can read it too.
func readAndRestore(resp *http.Response) ([]byte, error) {
	if resp.Body == nil || resp.Body == http.NoBody {
		return nil, nil
	}
	data, err := io.ReadAll(resp.Body)
	closeErr := resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(data))
	if err != nil {
		return data, err
	}
	return data, closeErr
}

// isEventStream reports a streaming body (SSE, NDJSON): only its status
// and content type are checked, since reading it to the end could block
// and it is not one JSON document.
func isEventStream(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "text/event-stream" || mt == "application/x-ndjson")
}

func checkDeclaredContentType(route *routers.Route, resp *http.Response) error {
	ref := route.Operation.Responses.Status(resp.StatusCode)
	if ref == nil {
		ref = route.Operation.Responses.Default()
	}
	if ref == nil || ref.Value == nil {
		return nil // ValidateResponse already judged the status.
	}
	ct := resp.Header.Get("Content-Type")
	if ref.Value.Content.Get(ct) == nil {
		return fmt.Errorf("content type %q is not declared for status %d", ct, resp.StatusCode)
	}
	return nil
}
