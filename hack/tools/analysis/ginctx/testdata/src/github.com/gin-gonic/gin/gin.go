// Package gin is the part of github.com/gin-gonic/gin's API the analyzer's
// tests need: a Context that satisfies context.Context.
package gin

import (
	"context"
	"time"
)

// Request stands in for *http.Request (net/http would make the test load
// far more than it checks).
type Request struct{ ctx context.Context }

func (r *Request) Context() context.Context { return r.ctx }

type Context struct {
	Request *Request
}

func (c *Context) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *Context) Done() <-chan struct{}       { return nil }
func (c *Context) Err() error                  { return nil }
func (c *Context) Value(any) any               { return nil }
func (c *Context) Copy() *Context              { return c }

var _ context.Context = (*Context)(nil)
