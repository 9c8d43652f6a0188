// Package service wires mission-control together: Redis stores, the
// event hub, the runner and the HTTP API.
package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"

	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/redisconn"
	"sortie.dev/services/kit/server"
	"sortie.dev/services/mission-control/internal/backend/openai"
	"sortie.dev/services/mission-control/internal/config"
	"sortie.dev/services/mission-control/internal/control"
	"sortie.dev/services/mission-control/internal/events"
	"sortie.dev/services/mission-control/internal/httpapi"
	"sortie.dev/services/mission-control/internal/library"
	"sortie.dev/services/mission-control/internal/metrics"
	"sortie.dev/services/mission-control/internal/missions"
	"sortie.dev/services/mission-control/internal/providers"
	"sortie.dev/services/mission-control/internal/runner"
	"sortie.dev/services/mission-control/internal/sse"
	"sortie.dev/services/mission-control/internal/streamcap"
	"sortie.dev/services/mission-control/internal/workspaces"
)

// Service is a running mission-control.
type Service struct {
	Server *server.Server
	Runner *runner.Runner
	Hub    *events.Hub
	Redis  *redis.Client
	// Control is exposed for tests that check a run has ended.
	Control *control.Store
	log     *slog.Logger
	addr    string
}

// New connects to Redis and builds the service.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Service, error) {
	rdb, err := redisconn.Connect(ctx, redisconn.Options{URL: cfg.RedisURL, Password: cfg.RedisPassword, Logger: log})
	if err != nil {
		return nil, err
	}
	return Build(cfg, log, rdb)
}

// Build assembles the service over an open Redis client.
func Build(cfg *config.Config, log *slog.Logger, rdb *redis.Client) (*Service, error) {
	srv, err := server.New(server.Options{Name: "mission-control", Addr: cfg.ListenAddr, Logger: log,
		CORSOrigins: cfg.CORSOrigins, TrustedProxies: cfg.TrustedProxies})
	if err != nil {
		return nil, err
	}
	// tokens gives the service's own token (health, the library) and, for
	// every call about a mission's workspace, delegated tokens for the
	// mission's owner (workspaces.Client.As).
	var tokens *authn.ServiceTokenSource
	var verifier *authn.Verifier
	if !cfg.AuthDevMode {
		tokens = authn.NewServiceTokenSource(strings.TrimSuffix(cfg.AuthURL, "/")+"/api/auth/token", cfg.ClientID, cfg.ClientSecret, nil)
		verifier = authn.NewVerifier(authn.NewJWKS(cfg.JWKSURL, authn.JWKSOptions{}),
			authn.VerifierOptions{Issuer: cfg.Issuer, Audience: cfg.Audience, Revocations: authn.RedisRevocations{Client: rdb},
				// A removed, disabled or demoted user (and a removed client)
				// is refused within 15 s of auth publishing it.
				Principals: authn.NewRedisPrincipals(rdb, authn.RedisPrincipalsOptions{})})
	}
	var wsTokens workspaces.TokenSource
	if tokens != nil {
		wsTokens = tokens
	}
	ws := workspaces.New(cfg.WorkspacesURL, wsTokens)
	ms := missions.NewStore(rdb)
	es := events.NewStore(rdb, cfg.ToolOutputLimit, cfg.StreamMaxLen)
	cs := control.NewStore(rdb)
	cs.LimitQueues(cfg.Limits.QueuedPerMission, int64(cfg.Limits.QueuedBytesPerUser))
	ps, err := providers.NewStore(rdb, providers.Options{Configured: cfg.Credentials, Key: cfg.CredentialsKey,
		EphemeralKey: cfg.AuthDevMode, OAuth: cfg.OAuth, Log: log})
	if err != nil {
		return nil, err
	}
	if err := ps.Migrate(context.Background()); err != nil {
		log.Warn("cannot migrate stored provider keys", "error", err.Error())
	}
	hub := events.NewHub(rdb, log)
	mx := metrics.New(srv.Registry(), metrics.Sources{Missions: ms, Runs: cs, SSEClients: hub.Clients, Log: log})
	es.SetObserver(mx)
	cs.OnTakeover(mx.TookOver)
	owner := cfg.ReplicaID
	if owner == "" {
		owner = replicaID()
	}
	var agents func(context.Context, string) (string, bool, error)
	if cfg.LibraryURL != "" {
		var lt library.TokenSource
		if tokens != nil {
			lt = tokens
		}
		agents = library.New(cfg.LibraryURL, lt).Agent
	}
	run := runner.New(ms, es, cs, ws, runner.Options{
		Agents: agents,
		Owner:  owner, MaxRunning: cfg.MaxRunningPerUser, LeaseTTL: cfg.LeaseTTL, CancelGrace: cfg.CancelGrace,
		CLIs: cfg.CLIs, Credential: ps.Credential, Log: log,
		LineLimit: cfg.Limits.OutputLine, FieldLimit: cfg.ToolOutputLimit,
		StartupTimeout: cfg.Agents.StartupTimeout, IdleTimeout: cfg.Agents.IdleTimeout,
		OpenAI: openai.Config{BaseURL: cfg.Agents.OpenAIBaseURL, Model: cfg.Agents.OpenAIModel,
			MaxSteps: cfg.Agents.OpenAIMaxSteps, ShellTimeout: cfg.Agents.OpenAIShellTimeout, MaxRetries: 2},
	})
	h := &httpapi.Handler{
		Missions: ms, Events: es, Control: cs, Providers: ps, Workspaces: ws, Runner: run,
		Stream:            &sse.Stream{Source: es, Hub: hub, KeepAlive: cfg.KeepAlive},
		Ping:              redisconn.Check(rdb),
		Dependencies:      dependencies(cfg),
		DefaultBackend:    cfg.DefaultBackend,
		MaxRunningPerUser: cfg.MaxRunningPerUser,
		AuthMode:          cfg.AuthMode,
		DevMode:           cfg.AuthDevMode,
		Limits:            cfg.Limits,
		Streams:           streamcap.New(rdb, cfg.Limits.StreamsPerUser, cfg.Limits.StreamSlotTTL, log),
		Log:               log,
	}
	h.Register(srv.Engine, authn.NewAuthenticator(verifier, cfg.AuthDevMode, log))
	srv.AddReadinessCheck("redis", redisconn.Check(rdb))
	log.Info("replica", "owner", owner)
	return &Service{Server: srv, Runner: run, Hub: hub, Redis: rdb, Control: cs, log: log, addr: cfg.ListenAddr}, nil
}

// dependencies are the services /api/health checks besides Redis and the
// operator: auth (unless in dev mode) and the library when configured.
func dependencies(cfg *config.Config) []httpapi.Dependency {
	var deps []httpapi.Dependency
	if cfg.AuthURL != "" {
		deps = append(deps, httpapi.Dependency{Name: "auth", Check: httpapi.HTTPCheck(nil, strings.TrimSuffix(cfg.AuthURL, "/")+"/api/auth/status")})
	}
	if cfg.LibraryURL != "" {
		deps = append(deps, httpapi.Dependency{Name: "library", Check: httpapi.HTTPCheck(nil, strings.TrimSuffix(cfg.LibraryURL, "/")+"/readyz")})
	}
	return deps
}

// replicaID names this process in run leases: unique even when two
// replicas share a host name.
func replicaID() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

// Run serves until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.addr, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx ends: the hub first (so every stream sees
// every event), then the runner (which reattaches orphaned runs), then HTTP.
func (s *Service) Serve(ctx context.Context, ln net.Listener) error {
	hubCtx, stopHub := context.WithCancel(context.WithoutCancel(ctx))
	hubErr := make(chan error, 1)
	go func() { hubErr <- s.Hub.Run(hubCtx) }()
	select {
	case <-s.Hub.Ready():
	case err := <-hubErr:
		stopHub()
		return err
	}
	s.Runner.Start(ctx)
	err := s.Server.Serve(ctx, ln)
	s.Runner.Wait()
	stopHub()
	<-hubErr
	_ = s.Redis.Close()
	return err
}
