// Command workspace-operator reconciles Workspace resources into Pods,
// volumes and Secrets (and, as later work lands, serves the workspace REST
// API beside the controller, sharing its cache).
package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/app"
	"sortie.dev/services/kit/logging"
	"sortie.dev/services/kit/version"
	"sortie.dev/services/workspace-operator/internal/config"
	"sortie.dev/services/workspace-operator/internal/controller"
)

func main() { app.Main("workspace-operator", run) }

func run(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, err := config.Load(args, os.LookupEnv)
	if err != nil {
		return err
	}
	log := logging.New(stderr, "workspace-operator", cfg.Level())
	ctrl.SetLogger(logr.FromSlogHandler(log.Handler()))
	log.Info("starting", "version", version.String(), "namespace", cfg.Namespace)
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
		// namespaced cache needs only a namespaced Role.
		Cache: cache.Options{DefaultNamespaces: map[string]cache.Config{cfg.Namespace: {}}},
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
	r := &controller.WorkspaceReconciler{
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
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctx)
}
