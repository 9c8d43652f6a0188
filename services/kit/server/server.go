// Package server runs a service's HTTP API: a gin engine with the middleware
// every Sortie service needs (request ids, access logs, panic recovery into
// a JSON 500, body limits, CORS, Prometheus metrics), the operational
// endpoints /healthz, /readyz and /metrics, and a graceful shutdown that
// drains ordinary requests before it closes long-lived streams.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"sortie.dev/services/kit/apierror"
)

// Options configure a Server. Zero values take the defaults in brackets.
type Options struct {
	Name              string        // service name, used in logs
	Addr              string        // listen address [":8080"]
	Logger            *slog.Logger  // [slog.Default()]
	ReadHeaderTimeout time.Duration // [10s]
	IdleTimeout       time.Duration // [120s]
	// DrainTimeout bounds how long shutdown waits for ordinary requests to
	// finish before it closes streams and then connections [20s].
	DrainTimeout time.Duration
	MaxBodyBytes int64    // request body limit [1 MiB]
	CORSOrigins  []string // allowed browser origins; empty disables CORS, "*" allows any
	// TrustedProxies are the CIDRs or addresses whose X-Forwarded-For is
	// believed when working out a client's address (the ingress): the
	// client is the rightmost address of the chain that is not one of
	// them. Empty means the TCP peer is the client.
	TrustedProxies []string
}

func (o *Options) defaults() {
	if o.Addr == "" {
		o.Addr = ":8080"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ReadHeaderTimeout == 0 {
		o.ReadHeaderTimeout = 10 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 120 * time.Second
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 20 * time.Second
	}
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = 1 << 20
	}
}

// Server is one service's HTTP server. Register routes on Engine, readiness
// checks with AddReadinessCheck, then call Run.
type Server struct {
	Engine *gin.Engine

	opts     Options
	log      *slog.Logger
	registry *prometheus.Registry
	metrics  *httpMetrics

	ready    atomic.Bool
	checksMu sync.Mutex
	checks   []readinessCheck

	// Requests in flight that are not streams; shutdown waits for them.
	// A counter polled by shutdown, not a WaitGroup: requests may still
	// arrive (and Add) on open connections while shutdown waits.
	active atomic.Int64
	// Closed when shutdown reaches the point where streams must end.
	streamsCtx    context.Context
	closeStreams  context.CancelFunc
	listenAddr    atomic.Value // string, once bound
	shutdownStart chan struct{}
}

// New builds a Server and its engine with the standard middleware and
// operational endpoints installed.
func New(opts Options) (*Server, error) {
	opts.defaults()
	gin.SetMode(gin.ReleaseMode)
	engine := gin.New()
	engine.HandleMethodNotAllowed = true
	engine.ContextWithFallback = true
	if err := engine.SetTrustedProxies(opts.TrustedProxies); err != nil {
		return nil, fmt.Errorf("trusted proxies: %w", err)
	}
	// Only X-Forwarded-For, read from the right past the trusted proxies:
	// the ingress and the gateway append the peer they saw to it, but pass
	// a client's own X-Real-IP through untouched, so believing that header
	// would let a client choose its address (and its login throttle).
	engine.RemoteIPHeaders = []string{"X-Forwarded-For"}
	cors, err := newCORS(opts.CORSOrigins)
	if err != nil {
		return nil, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	streamsCtx, closeStreams := context.WithCancel(context.Background())
	s := &Server{
		Engine:        engine,
		opts:          opts,
		log:           opts.Logger,
		registry:      reg,
		metrics:       newHTTPMetrics(reg),
		streamsCtx:    streamsCtx,
		closeStreams:  closeStreams,
		shutdownStart: make(chan struct{}),
	}

	engine.Use(s.track, requestID, s.observe, s.accessLog, s.recoverPanic, s.limitBody)
	if cors != nil {
		engine.Use(cors.handle)
	}
	engine.NoRoute(func(c *gin.Context) {
		apierror.Abort(c, http.StatusNotFound, apierror.CodeNotFound, "no route for "+c.Request.Method+" "+c.Request.URL.Path)
	})
	engine.NoMethod(func(c *gin.Context) {
		apierror.Abort(c, http.StatusMethodNotAllowed, apierror.CodeMethodNotAllowed, "method "+c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})
	engine.GET("/healthz", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"status": "ok"}) })
	engine.GET("/readyz", s.readyz)
	engine.GET("/metrics", gin.WrapH(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	return s, nil
}

// OperationalPaths are the routes New registers on every server; route
// checks against the public API spec leave them out.
var OperationalPaths = []string{"/healthz", "/readyz", "/metrics"}

// Registry is where the service registers its own Prometheus metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Logger returns the server's logger.
func (s *Server) Logger() *slog.Logger { return s.log }

// Addr returns the bound address once Run has bound its listener, else "".
func (s *Server) Addr() string {
	a, _ := s.listenAddr.Load().(string)
	return a
}

// Run binds the listener, marks the server ready and serves until ctx is
// cancelled, then shuts down gracefully. Binding first makes a port clash
// fail at start instead of after the service reported itself ready.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.opts.Addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on an existing listener (tests use port 0).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Engine,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.listenAddr.Store(ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.ready.Store(true)
	s.log.Info("serving", "addr", ln.Addr().String())

	select {
	case err := <-errc:
		s.ready.Store(false)
		s.closeStreams()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	return s.shutdown(srv, errc)
}

// shutdown stops accepting, waits for ordinary requests, then ends streams
// (SSE never goes idle, so without this it would hold Shutdown for the whole
// timeout) and finally closes whatever is left.
func (s *Server) shutdown(srv *http.Server, errc <-chan error) error {
	s.ready.Store(false)
	close(s.shutdownStart)
	s.log.Info("shutting down", "drain_timeout", s.opts.DrainTimeout.String())
	deadline, cancel := context.WithTimeout(context.Background(), s.opts.DrainTimeout)
	defer cancel()

	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- srv.Shutdown(deadline) }()

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.active.Load() > 0 {
		select {
		case <-tick.C:
			continue
		case <-deadline.Done():
			s.log.Warn("requests still running at the drain deadline", "requests", s.active.Load())
		}
		break
	}
	s.closeStreams()

	err := <-shutdownDone
	<-errc // Serve returns ErrServerClosed once Shutdown has begun.
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("closing connections that did not finish in time")
		_ = srv.Close()
		return nil
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	s.log.Info("stopped")
	return nil
}

type streamKey struct{}

// StreamContext marks the request as a long-lived stream (SSE) and returns a
// context that ends when the client goes away or when the server, having
// drained ordinary requests, closes streams. It also lifts the write
// deadline for this response. Call it once, at the start of the handler.
func StreamContext(c *gin.Context) context.Context {
	v, _ := c.Get(streamKey{})
	s, _ := v.(*Server)
	if s == nil {
		return c.Request.Context()
	}
	if done, _ := c.Get(streamMarkKey); done == nil {
		c.Set(streamMarkKey, true)
		s.active.Add(-1) // a stream does not hold the drain open
	}
	_ = http.NewResponseController(c.Writer).SetWriteDeadline(time.Time{})
	ctx, cancel := context.WithCancel(c.Request.Context())
	stop := context.AfterFunc(s.streamsCtx, cancel)
	go func() { <-ctx.Done(); stop() }()
	return ctx
}

// ShuttingDown is closed when the server begins to shut down.
func (s *Server) ShuttingDown() <-chan struct{} { return s.shutdownStart }

const streamMarkKey = "kit.stream"

func (s *Server) track(c *gin.Context) {
	s.active.Add(1)
	c.Set(streamKey{}, s)
	defer func() {
		if marked, _ := c.Get(streamMarkKey); marked == nil {
			s.active.Add(-1)
		}
	}()
	c.Next()
}
