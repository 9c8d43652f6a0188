package library

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"slices"
	"strings"

	"sortie.dev/services/workspace-operator/internal/agentapi"
)

// Where agent CLIs look for skills and tools in a workspace; the library's
// bundle (workspace layout) writes each skill under every skill root.
var (
	skillRoots = []string{".opencode/skill", ".claude/skills", ".agents/skills"}
	toolRoot   = ".opencode/tool"
)

// maxBundle bounds what one sync reads into memory: skills are text.
const maxBundle = 64 << 20

// Target is one workspace to sync.
type Target struct {
	Agent *agentapi.Client
	Dir   string // the workspace's root in its agent (/workspace, or a host workspace's path)
	// Revision is the library commit to sync; "" is the latest.
	Revision string
	// Skills and Tools name what the workspace wants; nil means all.
	Skills, Tools []string
	// Previous are the items (type/name) an earlier sync wrote.
	Previous []string
}

// Result is what a sync wrote.
type Result struct {
	Revision string
	Items    []string // type/name
	Missing  []string
	Files    int
}

// Sync writes the wanted skills and tools at the revision into the
// workspace, then removes what an earlier sync wrote that is no longer
// wanted. Files the user made beside them are left alone.
func (c *Client) Sync(ctx context.Context, t Target) (Result, error) {
	b, err := c.Bundle(ctx, t.Revision, t.Skills, t.Tools)
	if err != nil {
		return Result{}, err
	}
	defer b.Body.Close()
	data, err := io.ReadAll(io.LimitReader(b.Body, maxBundle+1))
	if err != nil {
		return Result{}, &UnavailableError{fmt.Errorf("read bundle: %w", err)}
	}
	if len(data) > maxBundle {
		return Result{}, fmt.Errorf("the bundle is larger than %d MiB", maxBundle>>20)
	}
	res := Result{Revision: b.Revision, Missing: b.Missing}
	if res.Items, err = itemsOf(data); err != nil {
		return Result{}, err
	}
	if len(res.Items) > 0 {
		tr, err := t.Agent.UploadTar(ctx, t.Dir, false, bytes.NewReader(data))
		if err != nil {
			return Result{}, fmt.Errorf("write the bundle into %s: %w", t.Dir, err)
		}
		res.Files = tr.Files
	}
	for _, old := range t.Previous {
		if slices.Contains(res.Items, old) {
			continue
		}
		for _, p := range pathsOf(old) {
			err := t.Agent.DeleteFile(ctx, path.Join(t.Dir, p), true)
			var ae *agentapi.Error
			if err != nil && !(errors.As(err, &ae) && ae.Status == http.StatusNotFound) {
				return Result{}, fmt.Errorf("remove %s: %w", old, err)
			}
		}
	}
	return res, nil
}

// itemsOf lists the items a workspace-layout bundle holds.
func itemsOf(data []byte) ([]string, error) {
	var out []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read bundle: %w", err)
		}
		name := path.Clean(h.Name)
		if rest, ok := strings.CutPrefix(name, skillRoots[0]+"/"); ok {
			out = append(out, "skill/"+strings.SplitN(rest, "/", 2)[0])
		} else if rest, ok := strings.CutPrefix(name, toolRoot+"/"); ok && strings.HasSuffix(rest, ".ts") && !strings.Contains(rest, "/") {
			out = append(out, "tool/"+strings.TrimSuffix(rest, ".ts"))
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// pathsOf are the places a synced item lives in a workspace.
func pathsOf(item string) []string {
	kind, name, _ := strings.Cut(item, "/")
	if name == "" || strings.Contains(name, "/") || strings.HasPrefix(name, ".") {
		return nil // never delete on a malformed record
	}
	switch kind {
	case "skill":
		out := make([]string, 0, len(skillRoots))
		for _, r := range skillRoots {
			out = append(out, path.Join(r, name))
		}
		return out
	case "tool":
		return []string{path.Join(toolRoot, name+".ts")}
	}
	return nil
}
