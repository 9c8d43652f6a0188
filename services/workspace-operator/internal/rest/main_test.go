package rest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"sortie.dev/api/v1alpha1"
	"sortie.dev/services/kit/kubetest"
)

// crdDir holds the Workspace CRD.
var crdDir = filepath.Join("..", "..", "..", "..", "api", "crds")

// testScheme is client-go's types and Sortie's; every manager and client
// of the tests reads it only.
var testScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}()

// kube is the package's one apiserver (with the Workspace CRD) for the
// tests that need no node: each works in a namespace of its own, served
// by a manager whose cache sees only that namespace (startREST).
var kube = kubetest.NewShared(kubetest.Options{CRDDirectoryPaths: []string{crdDir}, Scheme: testScheme})

// TestMain gives controller-runtime a logger that discards (without one it
// prints a warning with a stack trace into every test run) and stops the
// shared apiserver after the tests.
func TestMain(m *testing.M) {
	// Re-executed by startAgentProcess to be a real workspace-agent, in a
	// process of its own so that its memory is not the operator's.
	if os.Getenv(agentProcessEnv) == "1" {
		os.Exit(runAgentProcess())
	}
	ctrllog.SetLogger(logr.Discard())
	os.Exit(kube.Run(m))
}
