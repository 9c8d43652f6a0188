// Package gateway is the front door of `make run`: one port that sends each
// /api request to its service by the route table in sortie.dev/api, as the
// Helm chart's Ingress does in a cluster.
package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"time"

	"sortie.dev/api"
)

// Gateway proxies to one upstream per service.
type Gateway struct {
	proxies map[string]*httputil.ReverseProxy
	log     *slog.Logger
}

// New builds a gateway from service name → base URL. Every service of the
// route table needs an upstream: a missing one is a configuration error,
// not a 502 discovered by the first user.
func New(upstreams map[string]string, log *slog.Logger) (*Gateway, error) {
	g := &Gateway{proxies: map[string]*httputil.ReverseProxy{}, log: log}
	var problems []string
	for _, svc := range api.Services() {
		raw, ok := upstreams[svc]
		if !ok {
			problems = append(problems, "no upstream for "+svc)
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			problems = append(problems, fmt.Sprintf("upstream of %s: %q is not an http(s) URL", svc, raw))
			continue
		}
		g.proxies[svc] = g.proxy(svc, u)
	}
	for svc := range upstreams {
		if _, known := g.proxies[svc]; !known && !contains(api.Services(), svc) {
			problems = append(problems, "unknown service "+svc+" (known: "+strings.Join(api.Services(), ", ")+")")
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return g, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (g *Gateway) proxy(svc string, target *url.URL) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
		},
		// Flush at once: SSE and NDJSON streams must reach the client as
		// they are written (ingress-nginx needs X-Accel-Buffering: no for
		// the same reason).
		FlushInterval: -1,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: 0, // exec and rerun-init answer when done
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			g.log.Warn("upstream failed", "service", svc, "path", r.URL.Path, "error", err.Error())
			if r.Context().Err() != nil {
				return // the client went away
			}
			writeError(w, http.StatusBadGateway, "service_unavailable",
				fmt.Sprintf("the %s service did not answer; is it running?", svc))
		},
	}
}

// ServeHTTP routes by path prefix; anything outside the route table is a
// JSON 404, like every other error of the API.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
		return
	}
	svc, ok := api.ServiceFor(r.URL.Path)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no service serves "+r.URL.Path)
		return
	}
	g.proxies[svc].ServeHTTP(w, r)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg, "code": code})
}
