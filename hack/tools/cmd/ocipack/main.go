// Command ocipack builds a container image without a Docker engine: from
// files (our static binaries) or from a root filesystem tarball (the
// debootstrap Debian base), into an OCI image-layout tar archive that
// `ctr images import` loads and names by itself.
//
//	ocipack -name localhost/pause:3.10 -o pause.oci.tar -file bin/pause:/pause -entrypoint /pause
//	ocipack -name localhost/debian:bookworm -o debian.oci.tar -rootfs rootfs.tar -cmd /bin/bash
package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ocipack:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("ocipack", flag.ContinueOnError)
	name := fs.String("name", "", "image name, e.g. localhost/pause:3.10 (required)")
	out := fs.String("o", "", "output .oci.tar (required)")
	rootfs := fs.String("rootfs", "", "a tar of a root filesystem to use as the first layer")
	var files, env, entrypoint, cmd list
	fs.Var(&files, "file", "SRC:DST[:MODE] file to add (repeatable); MODE is octal, default that of SRC")
	fs.Var(&env, "env", "KEY=VALUE (repeatable)")
	fs.Var(&entrypoint, "entrypoint", "entrypoint argument (repeatable)")
	fs.Var(&cmd, "cmd", "cmd argument (repeatable)")
	workdir := fs.String("workdir", "", "working directory")
	user := fs.String("user", "", "user, e.g. 65532:65532")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" || *out == "" {
		return errors.New("-name and -o are required")
	}
	if *rootfs == "" && len(files) == 0 {
		return errors.New("give -rootfs or at least one -file")
	}

	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	var layers []v1.Layer
	if *rootfs != "" {
		l, err := tarball.LayerFromFile(*rootfs, tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return fmt.Errorf("rootfs layer: %w", err)
		}
		layers = append(layers, l)
	}
	if len(files) > 0 {
		data, err := filesLayer(files)
		if err != nil {
			return err
		}
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
			tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return fmt.Errorf("files layer: %w", err)
		}
		layers = append(layers, l)
	}
	img, err := mutate.AppendLayers(img, layers...)
	if err != nil {
		return fmt.Errorf("add layers: %w", err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.Architecture, cfg.OS = "amd64", "linux"
	cfg.Created = v1.Time{Time: time.Unix(0, 0).UTC()} // reproducible
	cfg.Config.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	cfg.Config.Entrypoint = entrypoint
	cfg.Config.Cmd = cmd
	cfg.Config.WorkingDir = *workdir
	cfg.Config.User = *user
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	return writeArchive(img, *name, *out)
}

// filesLayer makes a tar holding each file and its parent folders.
func filesLayer(specs []string) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	sort.Strings(specs)
	for _, spec := range specs {
		parts := strings.Split(spec, ":")
		if len(parts) < 2 || len(parts) > 3 || !strings.HasPrefix(parts[1], "/") {
			return nil, fmt.Errorf("-file %q: want SRC:/DST[:MODE]", spec)
		}
		src, dst := parts[0], path.Clean(parts[1])
		data, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", src, err)
		}
		info, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		mode := int64(info.Mode().Perm())
		if len(parts) == 3 {
			if _, err := fmt.Sscanf(parts[2], "%o", &mode); err != nil {
				return nil, fmt.Errorf("-file %q: mode %q is not octal", spec, parts[2])
			}
		}
		var parents []string
		for d := path.Dir(dst); d != "/"; d = path.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if dirs[d] {
				continue
			}
			dirs[d] = true
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
				return nil, err
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dst, "/"), Mode: mode, Size: int64(len(data)), ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeArchive writes an OCI image layout and tars it. The manifest carries
// io.containerd.image.name so `ctr -n k8s.io images import` names the image.
func writeArchive(img v1.Image, name, out string) error {
	dir, err := os.MkdirTemp(filepath.Dir(out), ".ocipack-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write layout: %w", err)
	}
	tag := name[strings.LastIndex(name, ":")+1:]
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          name,
		"org.opencontainers.image.ref.name": tag,
	})); err != nil {
		return fmt.Errorf("write image: %w", err)
	}
	tmp := out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if err := tarDir(f, dir); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, out)
}

func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return fmt.Errorf("tar image layout: %w", err)
	}
	return tw.Close()
}
