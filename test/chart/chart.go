// Package chart tests the Helm chart in charts/sortie: rendering with the
// Helm Go SDK, lint, the values schema, server-side dry runs against the
// real local kube-apiserver, the Ingress against the route table, the
// chart's RBAC with the real operator and library, and a real install.
package chart

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// KubeVersion is the version of the local node's control plane; client-only
// renders claim it so the chart's kubeVersion constraint is checked.
const KubeVersion = "v1.37.2"

// RepoRoot is the repository root, found from the working directory.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.work above the working directory")
		}
		dir = parent
	}
}

// ChartDir is charts/sortie.
func ChartDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "charts", "sortie"), nil
}

// Load loads the chart from its folder.
func Load() (*chart.Chart, error) {
	dir, err := ChartDir()
	if err != nil {
		return nil, err
	}
	return loader.Load(dir)
}

// Rendered is one client-side render of the chart.
type Rendered struct {
	Objects []*unstructured.Unstructured
	Notes   string
}

// Render renders the chart as `helm install --dry-run` without a cluster
// would (values checked against values.schema.json).
func Render(c *chart.Chart, release, namespace string, values map[string]any) (*Rendered, error) {
	kv, err := chartutil.ParseKubeVersion(KubeVersion)
	if err != nil {
		return nil, err
	}
	install := action.NewInstall(&action.Configuration{Log: func(string, ...any) {}})
	install.DryRun = true
	install.ClientOnly = true
	install.Replace = true
	install.ReleaseName = release
	install.Namespace = namespace
	install.KubeVersion = kv
	rel, err := install.Run(c, values)
	if err != nil {
		return nil, err
	}
	objs, err := Decode(rel.Manifest)
	if err != nil {
		return nil, err
	}
	return &Rendered{Objects: objs, Notes: rel.Info.Notes}, nil
}

// Decode splits a rendered manifest into objects, in Helm's install order.
func Decode(manifest string) ([]*unstructured.Unstructured, error) {
	docs := releaseutil.SplitManifests(manifest)
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	sort.Sort(releaseutil.BySplitManifestsOrder(keys))
	var out []*unstructured.Unstructured
	for _, k := range keys {
		doc := docs[k]
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			return nil, fmt.Errorf("decode %s: %w\n%s", k, err, doc)
		}
		if m == nil {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	return out, nil
}

// Find returns the rendered objects of kind, by name.
func (r *Rendered) Find(kind string) map[string]*unstructured.Unstructured {
	out := map[string]*unstructured.Unstructured{}
	for _, o := range r.Objects {
		if o.GetKind() == kind {
			out[o.GetName()] = o
		}
	}
	return out
}

// Lint runs helm lint (strict) with values.
func Lint(values map[string]any) ([]string, error) {
	dir, err := ChartDir()
	if err != nil {
		return nil, err
	}
	kv, err := chartutil.ParseKubeVersion(KubeVersion)
	if err != nil {
		return nil, err
	}
	l := action.NewLint()
	l.Strict = true
	l.Namespace = "sortie"
	l.KubeVersion = kv
	res := l.Run([]string{dir}, values)
	// Info messages (such as "icon is recommended") are advice; warnings
	// and errors fail.
	var msgs []string
	for _, m := range res.Messages {
		if m.Severity >= support.WarningSev {
			msgs = append(msgs, m.Error())
		}
	}
	return msgs, nil
}
