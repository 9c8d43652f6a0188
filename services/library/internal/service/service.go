// Package service wires the library service together from its
// configuration.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"sortie.dev/services/kit/authn"
	"sortie.dev/services/kit/redisconn"
	"sortie.dev/services/kit/server"
	"sortie.dev/services/library/internal/config"
	"sortie.dev/services/library/internal/httpapi"
	"sortie.dev/services/library/internal/repo"
	"sortie.dev/services/library/internal/revision"
	"sortie.dev/services/library/internal/starter"
)

// maxBodyBytes bounds a request body: a skill or template is text, and a
// few MiB is far more than any sensible one.
const maxBodyBytes = 4 << 20

// Service is a running library service.
type Service struct {
	cfg       *config.Config
	log       *slog.Logger
	server    *server.Server
	repo      *repo.Repo
	publisher *revision.Publisher

	keys     authn.KeySet
	kube     *rest.Config
	kubeSet  bool
	retryMin time.Duration
}

// Option changes how New builds the service.
type Option func(*Service)

// WithKeySet verifies tokens against keys instead of the JWKS URL (tests).
func WithKeySet(keys authn.KeySet) Option { return func(s *Service) { s.keys = keys } }

// WithKubeConfig publishes the revision with cfg instead of the configured
// kubeconfig or in-cluster config; nil turns publishing off (tests).
func WithKubeConfig(cfg *rest.Config) Option {
	return func(s *Service) { s.kube, s.kubeSet = cfg, true }
}

// WithRetryMin sets the first wait before a failed push is retried (tests).
func WithRetryMin(d time.Duration) Option { return func(s *Service) { s.retryMin = d } }

// New opens (cloning or creating) the repository and builds the service.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts ...Option) (*Service, error) {
	s := &Service{cfg: cfg, log: log, retryMin: time.Second}
	for _, o := range opts {
		o(s)
	}
	srv, err := server.New(server.Options{
		Name: "library", Addr: cfg.ListenAddr, Logger: log, MaxBodyBytes: maxBodyBytes,
		CORSOrigins: cfg.CORSOrigins, TrustedProxies: cfg.TrustedProxies,
	})
	if err != nil {
		return nil, err
	}
	s.server = srv
	if err := s.setupPublisher(); err != nil {
		return nil, err
	}
	auth, err := gitAuth(cfg)
	if err != nil {
		return nil, err
	}
	var seed = starter.FS()
	if !cfg.Seed {
		seed = nil
	}
	s.repo, err = repo.Open(ctx, repo.Options{
		Dir: cfg.RepoDir(), Remote: cfg.Remote, Branch: cfg.Branch, Auth: auth, Seed: seed,
		Log: log, Metrics: repo.NewMetrics(srv.Registry()), RemoteTimeout: cfg.RemoteTimeout,
		RetryMin: s.retryMin, RetryMax: cfg.PushRetryMax, OnHead: s.publisher.Notify,
	})
	if err != nil {
		return nil, err
	}
	srv.AddReadinessCheck("repository", s.repo.Check)

	var verifier *authn.Verifier
	if !cfg.AuthDevMode {
		keys := s.keys
		if keys == nil {
			keys = authn.NewJWKS(cfg.JWKSURL, authn.JWKSOptions{})
		}
		vopts := authn.VerifierOptions{Issuer: cfg.Issuer, Audience: cfg.Audience}
		if cfg.RedisURL != "" {
			rdb, err := redisconn.Connect(ctx, redisconn.Options{URL: cfg.RedisURL, Password: cfg.RedisPassword, Logger: log})
			if err != nil {
				return nil, err
			}
			vopts.Revocations = authn.RedisRevocations{Client: rdb}
			// A removed, disabled or demoted user (and a removed client) is
			// refused within 15 s of auth publishing it.
			vopts.Principals = authn.NewRedisPrincipals(rdb, authn.RedisPrincipalsOptions{})
			srv.AddReadinessCheck("redis", redisconn.Check(rdb))
		} else {
			log.Warn("SORTIE_REDIS_URL is not set: tokens revoked by logout, and those of removed or demoted users, are accepted until they expire")
		}
		verifier = authn.NewVerifier(keys, vopts)
	}
	h := &httpapi.Handler{
		Repo: s.repo, Sealer: cfg.Sealer, Remote: displayRemote(cfg.Remote), EmailDomain: cfg.AuthorEmailDomain,
		Published: s.publisher.Last, Log: log,
	}
	h.Register(srv.Engine, authn.NewAuthenticator(verifier, cfg.AuthDevMode, log))
	if cfg.Sealer == nil {
		log.Info("no encryption key (SORTIE_LIBRARY_ENCRYPTION_KEY_FILE): items with <encrypted> values will be refused")
	}
	return s, nil
}

func (s *Service) setupPublisher() error {
	kube := s.kube
	if !s.kubeSet {
		cfg, ok, err := revision.KubeConfig(s.cfg.Kubeconfig)
		if err != nil {
			return err
		}
		if !ok {
			s.log.Info("not in a Kubernetes cluster and no SORTIE_LIBRARY_KUBECONFIG: the library revision is not published to workspaces")
			return nil
		}
		kube = cfg
	}
	if kube == nil {
		return nil
	}
	client, err := kubernetes.NewForConfig(kube)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	s.publisher = revision.New(client, revision.Options{
		Namespace: s.cfg.ConfigMapNamespace, Name: s.cfg.ConfigMapName, Branch: s.cfg.Branch,
		Log: s.log, Registry: s.server.Registry(),
	})
	s.log.Info("publishing the library revision", "configmap", s.cfg.ConfigMapNamespace+"/"+s.cfg.ConfigMapName)
	return nil
}

// gitAuth builds the remote's credentials from the configured files.
func gitAuth(cfg *config.Config) (transport.AuthMethod, error) {
	switch {
	case cfg.GitToken != "":
		return &githttp.BasicAuth{Username: cfg.GitUsername, Password: cfg.GitToken}, nil
	case cfg.SSHKeyFile != "":
		user := "git"
		if u, err := url.Parse(cfg.Remote); err == nil && u.User != nil && u.User.Username() != "" {
			user = u.User.Username()
		} else if at := strings.Index(cfg.Remote, "@"); at > 0 && !strings.Contains(cfg.Remote, "://") {
			user = cfg.Remote[:at]
		}
		keys, err := gitssh.NewPublicKeysFromFile(user, cfg.SSHKeyFile, "")
		if err != nil {
			return nil, fmt.Errorf("SORTIE_LIBRARY_SSH_KEY_FILE: %w", err)
		}
		hostKeys, err := knownhosts.New(cfg.SSHKnownHostsFile)
		if err != nil {
			return nil, fmt.Errorf("SORTIE_LIBRARY_SSH_KNOWN_HOSTS_FILE: %w", err)
		}
		keys.HostKeyCallback = hostKeys
		return keys, nil
	default:
		return nil, nil
	}
}

// displayRemote is the remote as the status shows it: a user name kept,
// anything else in the user part dropped.
func displayRemote(remote string) string {
	u, err := url.Parse(remote)
	if err != nil || u.User == nil || u.Scheme == "" {
		return remote
	}
	u.User = url.User(u.User.Username())
	return u.String()
}

// Routes lists the registered routes (for the spec check).
func (s *Service) Routes() gin.RoutesInfo { return s.server.Engine.Routes() }

// Repo is the library repository (tests).
func (s *Service) Repo() *repo.Repo { return s.repo }

// Publisher is the revision publisher, nil when publishing is off.
func (s *Service) Publisher() *revision.Publisher { return s.publisher }

// Run serves on the configured address until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	return s.serve(ctx, func(ctx context.Context) error { return s.server.Run(ctx) })
}

// Serve is Run on a listener the caller opened (tests).
func (s *Service) Serve(ctx context.Context, ln net.Listener) error {
	return s.serve(ctx, func(ctx context.Context) error { return s.server.Serve(ctx, ln) })
}

// serve runs the push retrier and the publisher beside the server and
// waits for both to stop before closing the repository.
func (s *Service) serve(ctx context.Context, run func(context.Context) error) error {
	bg, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.repo.Run(bg) })
	wg.Go(func() { s.publisher.Run(bg) })
	err := run(ctx)
	cancel()
	wg.Wait()
	if cerr := s.repo.Close(); err == nil {
		err = cerr
	}
	return err
}
