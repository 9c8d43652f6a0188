// Package apierror owns the one error shape every Sortie endpoint answers
// with, {"error": "...", "code": "..."}, and the decoding of JSON request
// bodies into it.
package apierror

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

// Codes shared by every service. Services add their own for domain errors.
const (
	CodeBadRequest       = "bad_request"
	CodeInvalidJSON      = "invalid_json"
	CodeBodyTooLarge     = "body_too_large"
	CodeUnsupportedMedia = "unsupported_media_type"
	CodeUnauthorized     = "unauthorized"
	CodeForbidden        = "forbidden"
	CodeNotFound         = "not_found"
	CodeMethodNotAllowed = "method_not_allowed"
	CodeConflict         = "conflict"
	CodeRateLimited      = "rate_limited"
	CodeInternal         = "internal"
	CodeUnavailable      = "unavailable"
	// CodeStorageFull is a write refused because the service's store (Redis
	// at maxmemory) has no room; reads go on working and nothing stored is
	// lost, so the client retries later.
	CodeStorageFull = "storage_full"
)

// Error is an error with an HTTP status and a stable machine-readable code.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"error"`
	// RetryAfter, when positive, is sent as a Retry-After header (whole
	// seconds, rounded up) with a 429 or 503.
	RetryAfter time.Duration `json:"-"`
}

func (e *Error) Error() string { return e.Message }

// New returns an *Error.
func New(status int, code, msg string) *Error {
	return &Error{Status: status, Code: code, Message: msg}
}

// Newf returns an *Error with a formatted message.
func Newf(status int, code, format string, args ...any) *Error {
	return New(status, code, fmt.Sprintf(format, args...))
}

// BadRequest is a 400 with code bad_request.
func BadRequest(format string, args ...any) *Error {
	return Newf(http.StatusBadRequest, CodeBadRequest, format, args...)
}

// NotFound is a 404 with code not_found.
func NotFound(format string, args ...any) *Error {
	return Newf(http.StatusNotFound, CodeNotFound, format, args...)
}

// Unauthorized is a 401 with code unauthorized.
func Unauthorized(msg string) *Error {
	return New(http.StatusUnauthorized, CodeUnauthorized, msg)
}

// WithRetryAfter returns a copy of e that tells the client when to retry.
func (e *Error) WithRetryAfter(d time.Duration) *Error {
	c := *e
	c.RetryAfter = d
	return &c
}

// StorageFullRetry is the Retry-After of StorageFull: long enough for an
// operator or the client's own deletes to make room, short enough that a
// client retrying by itself recovers soon after.
const StorageFullRetry = 30 * time.Second

// StorageFull is a 503 storage_full with Retry-After: the write was refused
// because the store is full (see redisconn.IsOOM) and nothing was changed.
func StorageFull(what string) *Error {
	return Newf(http.StatusServiceUnavailable, CodeStorageFull,
		"%s: storage is full (Redis reached its maxmemory); nothing was changed, stored data is intact and can still be read; retry later", what).WithRetryAfter(StorageFullRetry)
}

// Forbidden is a 403 with code forbidden.
func Forbidden(msg string) *Error { return New(http.StatusForbidden, CodeForbidden, msg) }

// Respond writes err as the error shape and aborts the gin chain. An error
// that is not an *Error (anywhere in its chain) is a bug or an outage: the
// client gets a generic 500 and the detail stays in the server log, where the
// logging middleware finds it through c.Errors.
func Respond(c *gin.Context, err error) {
	var e *Error
	if !errors.As(err, &e) {
		_ = c.Error(err)
		e = New(http.StatusInternalServerError, CodeInternal, "internal server error")
	}
	if e.RetryAfter > 0 {
		c.Header("Retry-After", strconv.FormatInt(int64((e.RetryAfter+time.Second-1)/time.Second), 10))
	}
	c.AbortWithStatusJSON(e.Status, e)
}

// Abort writes a new error.
func Abort(c *gin.Context, status int, code, msg string) {
	Respond(c, New(status, code, msg))
}

// DecodeJSON reads the request body into v. A body larger than the server's
// limit, a missing or non-JSON content type, malformed JSON, a value of the
// wrong type and trailing data each become a 4xx *Error that says what is
// wrong. Unknown fields are accepted: clients of the original API send some.
func DecodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt := strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
		if mt != "application/json" && !strings.HasSuffix(mt, "+json") {
			return Newf(http.StatusUnsupportedMediaType, CodeUnsupportedMedia, "content type %q is not supported; send application/json", mt)
		}
	}
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return decodeError(err)
		}
		return New(http.StatusBadRequest, CodeInvalidJSON, "request body must hold a single JSON value")
	}
	return nil
}

func decodeError(err error) error {
	var (
		tooLarge  *http.MaxBytesError
		syntax    *json.SyntaxError
		typeError *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &tooLarge):
		return Newf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "request body is larger than %d bytes", tooLarge.Limit)
	case errors.Is(err, io.EOF):
		return New(http.StatusBadRequest, CodeInvalidJSON, "request body is empty; send a JSON object")
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return New(http.StatusBadRequest, CodeInvalidJSON, "request body is not valid JSON")
	case errors.As(err, &typeError):
		field := typeError.Field
		if field == "" {
			return Newf(http.StatusBadRequest, CodeInvalidJSON, "request body must be %s, not %s", jsonKind(typeError.Type.Kind().String()), typeError.Value)
		}
		return Newf(http.StatusBadRequest, CodeInvalidJSON, "field %q must be %s, not %s", field, jsonKind(typeError.Type.Kind().String()), typeError.Value)
	default:
		return Newf(http.StatusBadRequest, CodeInvalidJSON, "request body could not be read: %v", err)
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "a number"
	default:
		return goKind
	}
}
