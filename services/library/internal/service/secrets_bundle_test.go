package service_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"sortie.dev/services/kit/kubetest"
	"sortie.dev/services/kit/testwait"
	"sortie.dev/services/library/internal/revision"
)

func keyFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	must(t, os.WriteFile(p, []byte(hex.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n"), 0o600))
	return p
}

func TestSecretsAreSealed(t *testing.T) {
	remote := newRemote(t)
	l := startLibrary(t, map[string]string{"SORTIE_LIBRARY_ENCRYPTION_KEY_FILE": keyFile(t), "SORTIE_LIBRARY_REMOTE": remote})
	skill := "---\ndescription: deploys\n---\nUse token <encrypted>tok-PLAIN-1</encrypted> and <encrypted>tok-PLAIN-2</encrypted>.\n"
	saved := l.mustAs(l.root, 200, "PUT", "/api/library/skill/dep", content(skill)).Object(t)
	if saved["content"] != skill {
		t.Errorf("the editor gets the secret back in tags: %q", saved["content"])
	}
	l.mustAs(l.root, 200, "PUT", "/api/library/skill/dep/files/ref.md", content("also <encrypted>tok-PLAIN-3</encrypted>"))
	l.mustAs(l.root, 200, "PUT", "/api/library/skill/dep/files/run.sh", content("export T=<encrypted>tok-PLAIN-5</encrypted>"))
	tpl := map[string]any{"env_vars": map[string]string{"API_KEY": "tok-PLAIN-4", "MODE": "open"}, "encrypted_keys": []string{"API_KEY"}}
	got := l.mustAs(l.root, 200, "PUT", "/api/library/workspace-template/dep", tpl).Object(t)
	if env := got["env_vars"].(map[string]any); env["API_KEY"] != "tok-PLAIN-4" || env["MODE"] != "open" {
		t.Errorf("template env for the editor: %v", env)
	}
	mcp := map[string]any{"type": "remote", "url": "https://mcp.example", "headers": map[string]string{"Authorization": "Bearer <encrypted>tok-PLAIN-6</encrypted>"}}
	l.mustAs(l.root, 200, "PUT", "/api/library/mcp/dep", mcp)
	rev := l.status()["head"].(string)
	// Unchanged secrets keep their ciphertext: saving again is no commit.
	if again := l.mustAs(l.root, 200, "PUT", "/api/library/skill/dep", content(skill)); again.Header.Get("X-Library-Revision") != rev {
		t.Errorf("re-saving an unchanged skill made a commit")
	}
	if again := l.mustAs(l.root, 200, "PUT", "/api/library/workspace-template/dep", tpl); again.Header.Get("X-Library-Revision") != rev {
		t.Errorf("re-saving an unchanged template made a commit")
	}
	if again := l.mustAs(l.root, 200, "PUT", "/api/library/mcp/dep", mcp); again.Header.Get("X-Library-Revision") != rev {
		t.Errorf("re-saving an unchanged MCP server made a commit")
	}
	testwait.True(t, 20*time.Second, "push", func() bool { return l.status()["push_pending"] == false })
	// Neither the work tree, nor any object of the repository or the
	// remote, holds a plaintext secret.
	if gitMayFail(t, remote, "grep", "-n", "deploys", "main") == "" {
		t.Fatal("git grep finds nothing at all; the check below would prove nothing")
	}
	for _, dir := range []string{l.repoDir(), remote} {
		for _, rev := range strings.Fields(git(t, dir, "rev-list", "--all")) {
			if out := gitMayFail(t, dir, "grep", "-n", "tok-PLAIN", rev); out != "" {
				t.Errorf("plaintext in %s at %s:\n%s", dir, rev, out)
			}
		}
	}
	stored, _ := os.ReadFile(filepath.Join(l.repoDir(), "skill", "dep", "SKILL.md"))
	if !strings.Contains(string(stored), `<encrypted v="1">`) {
		t.Errorf("stored skill: %s", stored)
	}
	// Workspaces (the operator's service token) get bare values, in every
	// file of the skill.
	files := untar(t, l.mustAs(l.op, 200, "GET", "/api/library/bundle?skills=dep&tools=", nil).Body)
	if got := files[".claude/skills/dep/SKILL.md"]; !strings.Contains(got, "Use token tok-PLAIN-1 and tok-PLAIN-2.") || strings.Contains(got, "encrypted") {
		t.Errorf("deployed skill: %q", got)
	}
	if got := files[".opencode/skill/dep/ref.md"]; got != "also tok-PLAIN-3" {
		t.Errorf("deployed file: %q", got)
	}
	if got := files[".agents/skills/dep/run.sh"]; got != "export T=tok-PLAIN-5" {
		t.Errorf("deployed script: %q", got)
	}
}

// gitMayFail runs git and returns its output whatever the exit code
// (git grep exits 1 when it finds nothing).
func gitMayFail(t *testing.T, dir string, args ...string) string {
	t.Helper()
	out, _ := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out))
}

func untar(t *testing.T, data []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = string(b)
	}
}

func TestBundle(t *testing.T) {
	l := startLibrary(t, nil)
	old := l.status()["head"].(string)
	l.must(200, "PUT", "/api/library/skill/bare", content("No frontmatter here.\n"))
	l.mustAs(l.root, 200, "PUT", "/api/library/tool/count", content("// counts\nexport default {}\n"))

	all := l.must(200, "GET", "/api/library/bundle", nil)
	files := untar(t, all.Body)
	for _, p := range []string{
		".opencode/skill/code-review/SKILL.md", ".claude/skills/code-review/checklist.md", ".agents/skills/commit-messages/SKILL.md",
		".opencode/skill/bare/SKILL.md", ".opencode/tool/count.ts",
	} {
		if _, ok := files[p]; !ok {
			t.Errorf("bundle lacks %s", p)
		}
	}
	if got := files[".claude/skills/bare/SKILL.md"]; !strings.HasPrefix(got, "---\nname: bare\n---\nNo frontmatter") {
		t.Errorf("a skill without frontmatter gets its name: %q", got)
	}
	if all.Header.Get("X-Library-Revision") != l.status()["head"] {
		t.Errorf("revision header %q", all.Header.Get("X-Library-Revision"))
	}

	some := l.must(200, "GET", "/api/library/bundle?skills=bare,gone&tools=&layout=library", nil)
	files = untar(t, some.Body)
	if len(files) != 1 || files["skill/bare/SKILL.md"] == "" {
		t.Errorf("filtered bundle: %v", keys(files))
	}
	if got := some.Header.Get("X-Library-Missing"); got != "skill/gone" {
		t.Errorf("missing header %q", got)
	}

	// An older revision is served as it was, by a prefix of its hash.
	past := l.must(200, "GET", "/api/library/bundle?revision="+old[:12], nil)
	files = untar(t, past.Body)
	if _, ok := files[".opencode/skill/bare/SKILL.md"]; ok {
		t.Errorf("the old revision has a later skill")
	}
	if past.Header.Get("X-Library-Revision") != old {
		t.Errorf("old revision header %q", past.Header.Get("X-Library-Revision"))
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestRevisionConfigMap checks the contract with the workspace-operator
// against a real kube-apiserver: after every change the ConfigMap holds the
// new revision, written with no more rights than a namespaced Role gives.
func TestRevisionConfigMap(t *testing.T) {
	kube := kubetest.Start(t, kubetest.Options{})
	ctx := context.Background()
	const ns = "sortie-workspaces"
	must(t, kube.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	// The Role the chart must give the library: only ConfigMaps, only here.
	must(t, kube.Client.Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "library", Namespace: ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "create", "update"}}},
	}))
	must(t, kube.Client.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "library", Namespace: ns},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "library"},
		Subjects:   []rbacv1.Subject{{Kind: "User", Name: "sortie-library"}},
	}))
	l := startLibrary(t, nil, withKube(kube.UserConfig(t, "sortie-library")))

	revisionIs := func(want string) func() bool {
		return func() bool {
			var cm corev1.ConfigMap
			if err := kube.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "sortie-library-revision"}, &cm); err != nil {
				return false
			}
			return cm.Data[revision.KeyRevision] == want && cm.Data[revision.KeyBranch] == "main" && cm.Data[revision.KeyUpdatedAt] != ""
		}
	}
	testwait.True(t, 20*time.Second, "the starting revision", revisionIs(l.status()["head"].(string)))
	for i, step := range []func() response{
		func() response { return l.must(200, "PUT", "/api/library/skill/new", content("x")) },
		func() response { return l.must(204, "DELETE", "/api/library/skill/new", nil) },
		func() response { return l.must(200, "PUT", "/api/library/command/c", content("y")) },
	} {
		rev := step().Header.Get("X-Library-Revision")
		testwait.True(t, 20*time.Second, "revision of step "+string(rune('1'+i)), revisionIs(rev))
	}
	if got := l.status()["published_revision"]; got != l.status()["head"] {
		t.Errorf("status published_revision %v", got)
	}
}
