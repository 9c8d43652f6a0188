package server

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

type readinessCheck struct {
	name string
	fn   func(context.Context) error
}

// AddReadinessCheck registers a dependency that must answer for /readyz to
// report ready (Redis ping, the Kubernetes API, the library repository).
func (s *Server) AddReadinessCheck(name string, fn func(context.Context) error) {
	s.checksMu.Lock()
	defer s.checksMu.Unlock()
	s.checks = append(s.checks, readinessCheck{name: name, fn: fn})
}

// readinessTimeout bounds one /readyz probe; kubelet probes time out at 1s
// by default, so answer before that.
const readinessTimeout = 800 * time.Millisecond

func (s *Server) readyz(c *gin.Context) {
	if !s.ready.Load() {
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "not ready", "error": "server is starting or shutting down", "code": "unavailable"})
		return
	}
	s.checksMu.Lock()
	checks := append([]readinessCheck(nil), s.checks...)
	s.checksMu.Unlock()

	ctx, cancel := context.WithTimeout(c.Request.Context(), readinessTimeout)
	defer cancel()
	results := make(map[string]string, len(checks))
	var mu sync.Mutex
	var wg sync.WaitGroup
	failed := false
	for _, chk := range checks {
		wg.Go(func() {
			res := "ok"
			if err := chk.fn(ctx); err != nil {
				res = err.Error()
			}
			mu.Lock()
			defer mu.Unlock()
			results[chk.name] = res
			failed = failed || res != "ok"
		})
	}
	wg.Wait()
	if failed {
		c.JSON(http.StatusServiceUnavailable, gin.H{"status": "not ready", "checks": results, "error": "a dependency is not answering", "code": "unavailable"})
		return
	}
	c.JSON(http.StatusOK, gin.H{"status": "ready", "checks": results})
}
