// Package revision tells workspaces that the library changed: it writes the
// library's current revision into a ConfigMap that the workspace-operator
// watches, latest value wins, retried until the API server takes it.
package revision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/retry"
)

// The ConfigMap's keys: the contract with the workspace-operator.
const (
	KeyRevision  = "revision"   // the commit hash workspaces should have
	KeyBranch    = "branch"     // the library's branch
	KeyUpdatedAt = "updated_at" // RFC 3339, when the library published it
)

// KubeConfig returns the client config to publish with: the kubeconfig
// file when one is given, else the in-cluster config. ok is false, with no
// error, when neither exists: the service then runs without publishing.
func KubeConfig(kubeconfig string) (cfg *rest.Config, ok bool, err error) {
	if kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, false, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
		}
		return cfg, true, nil
	}
	cfg, err = rest.InClusterConfig()
	if errors.Is(err, rest.ErrNotInCluster) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("in-cluster config: %w", err)
	}
	return cfg, true, nil
}

// Publisher writes revisions into one ConfigMap. A nil *Publisher
// publishes nothing.
type Publisher struct {
	client    kubernetes.Interface
	namespace string
	name      string
	branch    string
	log       *slog.Logger
	now       func() time.Time
	retryMin  time.Duration
	retryMax  time.Duration
	published *prometheus.CounterVec

	mu      sync.Mutex
	pending string
	wake    chan struct{}
	last    string
}

// Options configure a Publisher.
type Options struct {
	Namespace, Name, Branch string
	Log                     *slog.Logger
	Registry                prometheus.Registerer // nil: metrics not registered
	RetryMin, RetryMax      time.Duration         // [500ms, 1m]
}

// New returns a Publisher; call Run to start it.
func New(client kubernetes.Interface, opts Options) *Publisher {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.RetryMin == 0 {
		opts.RetryMin = 500 * time.Millisecond
	}
	if opts.RetryMax == 0 {
		opts.RetryMax = time.Minute
	}
	p := &Publisher{
		client: client, namespace: opts.Namespace, name: opts.Name, branch: opts.Branch, log: opts.Log,
		now: time.Now, retryMin: opts.RetryMin, retryMax: opts.RetryMax, wake: make(chan struct{}, 1),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sortie_library_revision_publish_total",
			Help: "Writes of the library revision into its ConfigMap, by result (ok, error).",
		}, []string{"result"}),
	}
	if opts.Registry != nil {
		opts.Registry.MustRegister(p.published)
	}
	return p
}

// Notify asks for rev to be published. It never blocks: a revision not yet
// written is replaced by a newer one.
func (p *Publisher) Notify(rev string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.pending = rev
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Last is the revision last written successfully.
func (p *Publisher) Last() string {
	if p == nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

// Run publishes notified revisions until ctx ends, retrying with backoff.
func (p *Publisher) Run(ctx context.Context) {
	if p == nil {
		return
	}
	delay := p.retryMin
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-timer.C:
		}
		p.mu.Lock()
		rev := p.pending
		done := rev == "" || rev == p.last
		p.mu.Unlock()
		if done {
			continue
		}
		if err := p.Publish(ctx, rev); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.log.Warn("cannot publish the library revision; retrying", "configmap", p.namespace+"/"+p.name, "error", err.Error(), "in", delay.String())
			timer.Reset(delay)
			delay = min(2*delay, p.retryMax)
			continue
		}
		delay = p.retryMin
	}
}

// Publish writes rev into the ConfigMap now, creating it if needed.
func (p *Publisher) Publish(ctx context.Context, rev string) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		return p.write(ctx, rev)
	})
	result := "ok"
	if err != nil {
		result = "error"
	}
	p.published.WithLabelValues(result).Inc()
	if err != nil {
		return fmt.Errorf("publish revision to configmap %s/%s: %w", p.namespace, p.name, err)
	}
	p.mu.Lock()
	p.last = rev
	p.mu.Unlock()
	p.log.Debug("published library revision", "revision", rev)
	return nil
}

func (p *Publisher) write(ctx context.Context, rev string) error {
	cms := p.client.CoreV1().ConfigMaps(p.namespace)
	data := map[string]string{KeyRevision: rev, KeyBranch: p.branch, KeyUpdatedAt: p.now().UTC().Format(time.RFC3339)}
	cm, err := cms.Get(ctx, p.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: p.namespace, Labels: map[string]string{
				"app.kubernetes.io/name": "sortie", "app.kubernetes.io/component": "library",
			}},
			Data: data,
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return apierrors.NewConflict(corev1.Resource("configmaps"), p.name, err)
		}
		return err
	}
	if err != nil {
		return err
	}
	if cm.Data[KeyRevision] == rev {
		return nil
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	for k, v := range data {
		cm.Data[k] = v
	}
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	return err
}
