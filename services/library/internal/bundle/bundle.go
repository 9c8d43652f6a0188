// Package bundle builds what a workspace needs from the library at one
// revision, as one tar stream: skills in every agent CLI's layout and
// tools, secrets revealed to the callers who may see them (admins and the
// workspace-operator), ready to be unpacked at the workspace root.
package bundle

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"sortie.dev/services/library/internal/items"
)

// Layouts.
const (
	// LayoutWorkspace writes each skill under .opencode/skill/<name>/
	// (OpenCode), .claude/skills/<name>/ (Claude Code) and
	// .agents/skills/<name>/ (Amp), and each tool as .opencode/tool/<name>.ts.
	LayoutWorkspace = "workspace"
	// LayoutLibrary keeps the repository's own paths (skill/<name>/...,
	// tool/<name>.ts), for a consumer that places files itself.
	LayoutLibrary = "library"
)

// skillRoots are where agent CLIs look for skills in a workspace.
var skillRoots = []string{".opencode/skill", ".claude/skills", ".agents/skills"}

// Request says what to put in the bundle. A nil list means every item of
// that type; an empty one means none.
type Request struct {
	Skills []string
	Tools  []string
	Layout string
}

// File is one file of a bundle.
type File struct {
	Path string
	Data []byte
	Mode int64
}

// Bundle is a built bundle.
type Bundle struct {
	Files []File
	// Missing names requested items the revision does not have. They are
	// left out rather than failing the whole bundle: a workspace naming a
	// deleted skill should still get the others.
	Missing []string
	ModTime time.Time
}

// Build reads the requested skills and tools from fsys. Secrets are shown
// as view reveals them: opened to bare values (tags stripped) for admins
// and services, the placeholder for everyone else.
func Build(fsys fs.FS, req Request, view items.View, modTime time.Time) (*Bundle, error) {
	if req.Layout == "" {
		req.Layout = LayoutWorkspace
	}
	if req.Layout != LayoutWorkspace && req.Layout != LayoutLibrary {
		return nil, &items.Error{Code: "invalid_layout", Msg: fmt.Sprintf("layout must be %q or %q", LayoutWorkspace, LayoutLibrary)}
	}
	b := &Bundle{ModTime: modTime}
	skills, err := selectNames(fsys, items.Skill, req.Skills, b)
	if err != nil {
		return nil, err
	}
	for _, name := range skills {
		if err := b.addSkill(fsys, name, req.Layout, view); err != nil {
			return nil, err
		}
	}
	tools, err := selectNames(fsys, items.Tool, req.Tools, b)
	if err != nil {
		return nil, err
	}
	for _, name := range tools {
		data, err := fs.ReadFile(fsys, items.File(items.Tool, name))
		if err != nil {
			return nil, fmt.Errorf("read tool %s: %w", name, err)
		}
		p := items.File(items.Tool, name)
		if req.Layout == LayoutWorkspace {
			p = path.Join(".opencode/tool", name+".ts")
		}
		b.Files = append(b.Files, File{Path: p, Data: reveal(data, view), Mode: 0o644})
	}
	slices.SortFunc(b.Files, func(x, y File) int { return strings.Compare(x.Path, y.Path) })
	return b, nil
}

// selectNames returns the wanted names that exist, recording the others
// as missing; nil wanted means all.
func selectNames(fsys fs.FS, k items.Kind, wanted []string, b *Bundle) ([]string, error) {
	if wanted == nil {
		return items.Names(fsys, k)
	}
	var out []string
	for _, n := range wanted {
		if err := items.ValidName(n); err != nil {
			return nil, err
		}
		if items.Exists(fsys, k, n) {
			out = append(out, n)
		} else {
			b.Missing = append(b.Missing, string(k)+"/"+n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// reveal shows the secrets of one file. Every file of a skill may hold
// them (a save seals them in any file), not only the markdown.
func reveal(data []byte, view items.View) []byte {
	if !bytes.Contains(data, []byte("<encrypted")) {
		return data
	}
	return []byte(view.Reveal(string(data)))
}

func (b *Bundle) addSkill(fsys fs.FS, name, layout string, view items.View) error {
	dir := path.Join("skill", name)
	var description string
	if md, err := fs.ReadFile(fsys, items.File(items.Skill, name)); err == nil {
		description = items.SkillDescription(string(md))
	}
	return fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil // never deploy a symlink a remote might hold
		}
		data, err := fs.ReadFile(fsys, p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", p, err)
		}
		rel := strings.TrimPrefix(p, dir+"/")
		data = reveal(data, view)
		if rel == "SKILL.md" {
			data = []byte(items.EnsureSkillFrontmatter(string(data), name, view.Reveal(description)))
		}
		mode := int64(0o644)
		if info, err := d.Info(); err == nil && info.Mode()&0o111 != 0 {
			mode = 0o755
		}
		if layout == LayoutLibrary {
			b.Files = append(b.Files, File{Path: p, Data: data, Mode: mode})
			return nil
		}
		for _, root := range skillRoots {
			b.Files = append(b.Files, File{Path: path.Join(root, name, rel), Data: data, Mode: mode})
		}
		return nil
	})
}

// WriteTar writes the bundle as an uncompressed tar stream.
func (b *Bundle) WriteTar(w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, f := range b.Files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.Path, Mode: f.Mode, Size: int64(len(f.Data)), ModTime: b.ModTime, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return err
		}
	}
	return tw.Close()
}
