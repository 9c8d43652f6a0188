// Package service wires the auth service together from its configuration.
package service

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"

	"sortie.dev/services/auth/internal/clients"
	"sortie.dev/services/auth/internal/config"
	"sortie.dev/services/auth/internal/httpapi"
	"sortie.dev/services/auth/internal/keyring"
	"sortie.dev/services/auth/internal/throttle"
	"sortie.dev/services/auth/internal/tokens"
	"sortie.dev/services/auth/internal/users"
	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/redisconn"
	"sortie.dev/services/kit/server"
)

// Service is a running auth service.
type Service struct {
	cfg     *config.Config
	log     *slog.Logger
	server  *server.Server
	redis   *redis.Client
	ring    *keyring.Ring
	users   atomic.Pointer[users.Store]
	clients atomic.Pointer[clients.Store]
	now     func() time.Time

	reloadMu   sync.Mutex             // one Reload (and publication) at a time
	principals *authn.RedisPrincipals // this service's own view of what it publishes
}

// Option changes how New builds the service.
type Option func(*Service)

// WithClock replaces time.Now for token times and key retirement (tests).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// New checks the configuration against the world (keys, users, clients,
// Redis) and builds the service. It fails rather than start unsafely.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) (*Service, error) {
	s := &Service{cfg: cfg, log: log, now: time.Now}
	for _, o := range opts {
		o(s)
	}
	if cfg.DevMode {
		log.Warn("DEV MODE: authentication is disabled; any login succeeds as the admin user \"dev\". Never run this on a network others can reach.")
	}
	keys, err := s.loadKeys()
	if err != nil {
		return nil, err
	}
	if s.ring, err = keyring.New(keys, cfg.TokenTTL, s.now); err != nil {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	if err := s.loadUsers(); err != nil {
		return nil, err
	}
	if err := s.loadClients(); err != nil {
		return nil, err
	}

	s.redis, err = redisconn.Connect(ctx, redisconn.Options{URL: cfg.RedisURL, Password: cfg.RedisPassword, Logger: log})
	if err != nil {
		return nil, err
	}

	s.server, err = server.New(server.Options{
		Name:           "auth",
		Addr:           cfg.ListenAddr,
		Logger:         log,
		MaxBodyBytes:   64 << 10, // logins and token requests are tiny
		CORSOrigins:    cfg.CORSOrigins,
		TrustedProxies: cfg.TrustedProxies,
	})
	if err != nil {
		_ = s.redis.Close()
		return nil, err
	}
	s.server.AddReadinessCheck("redis", redisconn.Check(s.redis))
	s.principals = authn.NewRedisPrincipals(s.redis, authn.RedisPrincipalsOptions{Now: s.now})
	if err := s.publish(ctx); err != nil {
		_ = s.redis.Close()
		return nil, err
	}

	h := &httpapi.Handler{
		Mode:              cfg.Mode(),
		Users:             s.users.Load,
		Clients:           s.clients.Load,
		DelegatingClients: cfg.DelegatingClients,
		Throttle: throttle.New(s.redis, throttle.Limits{
			PerUser: cfg.LoginMaxFailures, PerIP: cfg.LoginMaxFailuresPerIP, UserCeiling: cfg.LoginUserCeiling,
			Window: cfg.LoginWindow,
			// An address stays known to the ceiling as long as a login
			// from it stays valid.
			KnownFor: cfg.TokenTTL,
		}),
		Redis:  s.redis,
		Tokens: &tokens.Issuer{Signer: s.ring, Issuer: cfg.Issuer, Audience: cfg.Audience, Now: s.now},
		Verifier: authn.NewVerifier(s.ring, authn.VerifierOptions{
			Issuer: cfg.Issuer, Audience: cfg.Audience,
			Revocations: authn.RedisRevocations{Client: s.redis},
			Principals:  s.principals,
			Now:         s.now,
		}),
		JWKS:            s.ring.JWKS,
		TokenTTL:        cfg.TokenTTL,
		ServiceTokenTTL: cfg.ServiceTokenTTL,
		Log:             log,
	}
	h.Register(s.server.Engine, s.server.Registry())
	log.Info("auth configured", "mode", string(cfg.Mode()), "signing_key", s.ring.Active().ID, "token_ttl", cfg.TokenTTL.String())
	return s, nil
}

// Routes lists the registered routes (for the spec check).
func (s *Service) Routes() gin.RoutesInfo { return s.server.Engine.Routes() }

// Run serves on the configured address until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	defer s.redis.Close()
	go s.reloadLoop(ctx)
	return s.server.Run(ctx)
}

// Serve is Run on a listener the caller opened (tests).
func (s *Service) Serve(ctx context.Context, ln net.Listener) error {
	defer s.redis.Close()
	go s.reloadLoop(ctx)
	return s.server.Serve(ctx, ln)
}

// Reload re-reads keys, users and clients, then publishes the principals.
// A file that fails to load keeps its previous contents (a half-written
// Secret update must not lock everyone out), and what is kept is published
// again, so a Redis that lost the hash gets it back at the next reload.
func (s *Service) Reload() error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	var errs []error
	if keys, err := s.loadKeys(); err != nil {
		errs = append(errs, err)
	} else if err := s.ring.Set(keys); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, s.loadUsers(), s.loadClients())
	if cl := s.clients.Load(); s.cfg.ClientsFile != "" {
		for _, id := range s.cfg.DelegatingClients {
			if !cl.Has(id) {
				s.log.Warn("a delegating client is no longer in the clients file; it cannot ask for tokens", "client_id", id)
			}
		}
	}
	errs = append(errs, s.publish(context.Background()))
	return errors.Join(errs...)
}

// publish writes the current users and clients to Redis for every
// service's verifier (docs/tenancy.md), then drops this service's own
// cached view of them so its /verify sees the change at once.
func (s *Service) publish(ctx context.Context) error {
	set := authn.PrincipalSet{Users: s.users.Load().Roles(), Clients: s.clients.Load().IDs()}
	if s.cfg.DevMode {
		// Dev-mode logins are the dev user, whatever the store holds.
		set.Users[authn.DevIdentity.UserID] = authn.DevIdentity.Role
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := authn.PublishPrincipals(ctx, s.redis, set, s.now()); err != nil {
		return err
	}
	s.principals.Forget()
	s.log.Debug("principals published", "users", len(set.Users), "clients", len(set.Clients))
	return nil
}

func (s *Service) reloadLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.ReloadEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			before := s.ring.Active().ID
			if err := s.Reload(); err != nil {
				s.log.Error("reload failed; keeping (and publishing) the previous keys, users and clients", "error", err.Error())
			}
			if after := s.ring.Active().ID; after != before {
				s.log.Info("signing key rotated", "previous", before, "active", after)
			}
		}
	}
}

func (s *Service) loadKeys() ([]*keyring.Key, error) {
	dir := s.cfg.KeysDir
	if dir == "" {
		// Only dev mode gets here (Validate requires a folder otherwise):
		// an in-memory key that dies with the process.
		if cur := s.ring; cur != nil {
			return []*keyring.Key{cur.Active()}, nil
		}
		k, err := keyring.Generate(s.now())
		if err != nil {
			return nil, err
		}
		return []*keyring.Key{k}, nil
	}
	keys, err := keyring.LoadDir(dir)
	if err == nil {
		return keys, nil
	}
	if !s.cfg.GenerateKey || !errors.Is(err, keyring.ErrNoKeys) {
		return nil, fmt.Errorf("signing keys: %w", err)
	}
	k, path, err := keyring.WriteNew(dir, s.now())
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	s.log.Info("generated a signing key", "path", path, "kid", k.ID)
	return []*keyring.Key{k}, nil
}

func (s *Service) loadUsers() error {
	var (
		store *users.Store
		err   error
	)
	switch s.cfg.Mode() {
	case config.ModeDisabled:
		store, err = users.NewSingle(devPassword())
	case config.ModeSingleTenant:
		if cur := s.users.Load(); cur != nil {
			return nil // the password comes from env or a file read at start
		}
		store, err = users.NewSingle(s.cfg.Password)
	case config.ModeMultiUser:
		store, err = users.LoadFile(s.cfg.UsersFile)
	}
	if err != nil {
		return fmt.Errorf("users: %w", err)
	}
	s.users.Store(store)
	return nil
}

// devPassword is an unguessable password nobody uses: dev mode answers
// logins before looking at users, but the store must not be empty.
func devPassword() string {
	return rand.Text()
}

func (s *Service) loadClients() error {
	if s.cfg.ClientsFile == "" {
		s.clients.Store(clients.Empty())
		return nil
	}
	store, err := clients.LoadFile(s.cfg.ClientsFile)
	if err != nil {
		return fmt.Errorf("service clients: %w", err)
	}
	s.clients.Store(store)
	return nil
}
