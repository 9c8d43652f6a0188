package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"sortie.dev/services/kit/version"
	"sortie.dev/services/mission-control/internal/config"
)

// Dependency is a service /api/health reports on.
type Dependency struct {
	Name  string
	Check func(ctx context.Context) error
}

// healthTimeout bounds each check, so a hung dependency makes the answer
// "degraded" rather than slow.
const healthTimeout = 1500 * time.Millisecond

// HTTPCheck returns a check that GETs url and wants a 2xx answer.
func HTTPCheck(client *http.Client, url string) func(ctx context.Context) error {
	if client == nil {
		client = &http.Client{Timeout: healthTimeout}
	}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("health check: %w", err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("health check: %w", err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("health check: %s answered %d", url, resp.StatusCode)
		}
		return nil
	}
}

// health answers 200 whatever the dependencies say: the seed gives no
// failure shape and clients read auth_required from it even when a
// dependency is down. status is "degraded" when any check fails, and each
// service is "ok" or "error".
func (h *Handler) health(c *gin.Context) {
	deps := append([]Dependency{{"redis", h.Ping}, {"workspaces", h.Workspaces.Ping}}, h.Dependencies...)
	services := make(map[string]string, len(deps))
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
	)
	for _, d := range deps {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(c.Request.Context(), healthTimeout)
			defer cancel()
			err := d.Check(ctx)
			mu.Lock()
			defer mu.Unlock()
			services[d.Name] = "ok"
			if err != nil {
				services[d.Name] = "error"
				errs = append(errs, fmt.Errorf("%s: %w", d.Name, err))
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		_ = c.Error(err) // logged with the request
	}
	status := "ok"
	for _, st := range services {
		if st != "ok" {
			status = "degraded"
		}
	}
	c.JSON(http.StatusOK, gin.H{
		"status":        status,
		"version":       version.String(),
		"dev_mode":      h.DevMode,
		"auth_required": h.AuthMode != config.AuthDisabled,
		"auth_mode":     h.AuthMode,
		"services":      services,
	})
}
