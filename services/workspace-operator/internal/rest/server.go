package rest

import (
	"context"
	"fmt"
	"log/slog"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/server"
)

// Runnable runs the REST server inside the controller manager. Every
// replica serves (only the controller needs a leader).
type Runnable struct{ Server *server.Server }

// Start implements manager.Runnable.
func (r Runnable) Start(ctx context.Context) error { return r.Server.Run(ctx) }

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (Runnable) NeedLeaderElection() bool { return false }

// EnsureDefault creates the default host workspace when it is missing; it
// always exists, as in the original server, and cannot be deleted over REST.
type EnsureDefault struct {
	Client    client.Client
	Namespace string
	Log       *slog.Logger
}

// Start implements manager.Runnable.
func (e EnsureDefault) Start(ctx context.Context) error {
	ws := &v1alpha1.Workspace{
		ObjectMeta: metav1.ObjectMeta{Name: DefaultName, Namespace: e.Namespace},
		Spec:       v1alpha1.WorkspaceSpec{DisplayName: DefaultName, Type: v1alpha1.TypeHost, Path: v1alpha1.HostRoot},
	}
	err := e.Client.Create(ctx, ws)
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create the default host workspace: %w", err)
	}
	if err == nil {
		e.Log.Info("created the default host workspace", "namespace", e.Namespace)
	}
	return nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (EnsureDefault) NeedLeaderElection() bool { return false }
