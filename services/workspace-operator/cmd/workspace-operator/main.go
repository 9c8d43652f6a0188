// Command workspace-operator reconciles Workspace resources into Pods,
// volumes and Secrets, and serves the workspace REST API (/api/workspaces)
// beside the controller, sharing its cache.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/app"
	"sortie.dev/services/kit/authn"
	kitconfig "sortie.dev/services/kit/config"
	"sortie.dev/services/kit/logging"
	"sortie.dev/services/kit/redisconn"
	"sortie.dev/services/kit/server"
	"sortie.dev/services/kit/version"
	"sortie.dev/services/workspace-operator/internal/config"
	"sortie.dev/services/workspace-operator/internal/controller"
	"sortie.dev/services/workspace-operator/internal/library"
	"sortie.dev/services/workspace-operator/internal/rest"
)

func main() { app.Main("workspace-operator", run) }

func run(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, err := config.Load(args, os.LookupEnv)
	if err != nil {
		return err
	}
	log := logging.New(stderr, "workspace-operator", cfg.Level())
	ctrl.SetLogger(logr.FromSlogHandler(log.Handler()))
	log.Info("starting", "version", version.String(), "namespace", cfg.Namespace, "auth_mode", cfg.AuthMode)
	w := cfg.Workload
	log.Info("workspace pods", "requests", resourceText(w.Requests), "limits", resourceText(w.Limits), "max", resourceText(w.Max),
		"capabilities", w.Capabilities, "runtime_class", w.RuntimeClass, "runtime_classes", w.RuntimeClasses)
	for distro, img := range cfg.Substitutions() {
		log.Warn("distro mapped to a substitute image", "distro", distro, "image", img)
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	restCfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("kubernetes client config: %w", err)
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress:  cfg.ProbeAddr,
		LeaderElection:          cfg.LeaderElection,
		LeaderElectionID:        "workspace-operator.sortie.dev",
		LeaderElectionNamespace: cfg.Namespace,
		// Workspaces and everything they own live in one namespace: a
		// namespaced cache needs only a namespaced Role, and of its Secrets
		// the operator holds only its own.
		Cache: controller.CacheOptions(cfg),
	})
	if err != nil {
		return fmt.Errorf("controller manager: %w", err)
	}
	startSeconds := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "sortie_workspace_start_seconds",
		Help:    "Time from a workspace Pod's creation to the workspace being ready.",
		Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600},
	})
	crmetrics.Registry.MustRegister(startSeconds)
	lib, err := libraryClient(cfg)
	if err != nil {
		return err
	}
	r := &controller.WorkspaceReconciler{
		Skills:       lib,
		Client:       mgr.GetClient(),
		Scheme:       scheme,
		Config:       cfg,
		Prober:       controller.AgentProber{},
		Recorder:     mgr.GetEventRecorder("workspace-operator"),
		StartSeconds: startSeconds,
	}
	if err := r.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("workspace controller: %w", err)
	}
	srv, err := server.New(server.Options{
		Name: "workspace-operator", Addr: cfg.ListenAddr, Logger: log,
		CORSOrigins: cfg.CORSOrigins, TrustedProxies: cfg.TrustedProxies,
	})
	if err != nil {
		return err
	}
	var verifier *authn.Verifier
	if !cfg.AuthDevMode {
		opts := authn.VerifierOptions{Issuer: cfg.Issuer, Audience: cfg.Audience}
		if cfg.RedisURL != "" {
			rdb, err := connectRedis(ctx, cfg, log)
			if err != nil {
				return err
			}
			defer rdb.Close()
			opts.Revocations = authn.RedisRevocations{Client: rdb}
			// A removed, disabled or demoted user (and a removed client) is
			// refused within 15 s of auth publishing it.
			opts.Principals = authn.NewRedisPrincipals(rdb, authn.RedisPrincipalsOptions{})
			srv.AddReadinessCheck("redis", redisconn.Check(rdb))
		} else {
			log.Warn("SORTIE_REDIS_URL is not set: tokens revoked by logout, and those of removed or demoted users, are accepted until they expire")
		}
		verifier = authn.NewVerifier(authn.NewJWKS(cfg.JWKSURL, authn.JWKSOptions{}), opts)
	}
	h := &rest.Handler{
		Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Namespace: cfg.Namespace,
		DefaultDistro: cfg.DefaultDistro, AgentPort: cfg.AgentPort, Log: log, Library: lib,
		MultiUser: cfg.MultiUser(), Workload: &cfg.Workload, ExecMaxOutput: cfg.ExecMaxOutput,
	}
	if err := rest.IndexWorkspaces(ctx, mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("workspace index: %w", err)
	}
	h.Register(srv.Engine, authn.NewAuthenticator(verifier, cfg.AuthDevMode, log).Require(authn.RoleUser, authn.RoleAdmin, authn.RoleService))
	if err := mgr.Add(rest.Runnable{Server: srv}); err != nil {
		return err
	}
	// Single-user mode has one default host workspace, made at start; in
	// multi-user mode each user's is made on their first use of it.
	if !cfg.MultiUser() {
		if err := mgr.Add(rest.EnsureDefault{Client: mgr.GetClient(), Namespace: cfg.Namespace, Log: log}); err != nil {
			return err
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctx)
}

func connectRedis(ctx context.Context, cfg *config.Config, log *slog.Logger) (*redis.Client, error) {
	var password string
	if cfg.RedisPasswordFile != "" {
		p, err := kitconfig.ReadSecretFile(cfg.RedisPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("redis password: %w", err)
		}
		password = p
	}
	return redisconn.Connect(ctx, redisconn.Options{URL: cfg.RedisURL, Password: password, Logger: log})
}

// libraryClient is the library service's client, with a service token from
// the auth service unless authentication is off (dev mode).
func libraryClient(cfg *config.Config) (*library.Client, error) {
	c := &library.Client{BaseURL: cfg.LibraryURL, HTTP: &http.Client{Timeout: 2 * time.Minute}}
	if cfg.LibraryURL == "" || cfg.AuthDevMode {
		return c, nil
	}
	secret, err := kitconfig.ReadSecretFile(cfg.ClientSecretFile)
	if err != nil {
		return nil, fmt.Errorf("service client secret: %w", err)
	}
	c.Tokens = authn.NewServiceTokenSource(strings.TrimSuffix(cfg.AuthURL, "/")+"/api/auth/token", cfg.ClientID, secret, nil)
	return c, nil
}

// resourceText is "cpu=2 memory=4Gi ephemeral-storage=10Gi", for the log.
func resourceText(l corev1.ResourceList) string {
	var parts []string
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		if q, ok := l[r]; ok {
			parts = append(parts, string(r)+"="+q.String())
		}
	}
	return strings.Join(parts, " ")
}
