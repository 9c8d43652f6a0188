package repo

import (
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/index"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// dirNode is one folder of the index, being turned into a tree object.
type dirNode struct {
	files map[string]*index.Entry
	dirs  map[string]*dirNode
}

func newDirNode() *dirNode {
	return &dirNode{files: map[string]*index.Entry{}, dirs: map[string]*dirNode{}}
}

// indexTree arranges the index's entries into folders (in memory only).
func indexTree(idx *index.Index) *dirNode {
	root := newDirNode()
	for _, e := range idx.Entries {
		n := root
		parts := strings.Split(e.Name, "/")
		for _, p := range parts[:len(parts)-1] {
			sub, ok := n.dirs[p]
			if !ok {
				sub = newDirNode()
				n.dirs[p] = sub
			}
			n = sub
		}
		n.files[parts[len(parts)-1]] = e
	}
	return root
}

// writeTrees stores the tree objects of the index and returns the root's
// hash. Folders no touched path reaches are the same as in old (HEAD's
// tree), so their hashes are reused without reading or writing anything:
// go-git's own commit re-checks every tree of the repository, which made a
// save cost grow with the size of the library.
func (r *Repo) writeTrees(n *dirNode, dir string, old *object.Tree, touched map[string]bool) (plumbing.Hash, error) {
	if old != nil && !reaches(touched, dir) {
		return old.Hash, nil
	}
	entries := make([]object.TreeEntry, 0, len(n.files)+len(n.dirs))
	for name, e := range n.files {
		entries = append(entries, object.TreeEntry{Name: name, Mode: e.Mode, Hash: e.Hash})
	}
	for name, sub := range n.dirs {
		child := path.Join(dir, name)
		var oldSub *object.Tree
		if old != nil {
			if te, err := old.FindEntry(name); err == nil && te.Mode == filemode.Dir {
				if !reaches(touched, child) {
					entries = append(entries, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: te.Hash})
					continue
				}
				if t, err := r.git.TreeObject(te.Hash); err == nil {
					oldSub = t
				}
			}
		}
		h, err := r.writeTrees(sub, child, oldSub, touched)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entries = append(entries, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
	}
	// Git orders entries by name, a folder's name taken with a trailing
	// slash.
	key := func(e object.TreeEntry) string {
		if e.Mode == filemode.Dir {
			return e.Name + "/"
		}
		return e.Name
	}
	slices.SortFunc(entries, func(a, b object.TreeEntry) int { return strings.Compare(key(a), key(b)) })
	tree := &object.Tree{Entries: entries}
	obj := r.git.Storer.NewEncodedObject()
	if err := tree.Encode(obj); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("encode tree %s: %w", dir, err)
	}
	h, err := r.git.Storer.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("store tree %s: %w", dir, err)
	}
	return h, nil
}

// reaches reports whether folder dir holds, is, or lies inside a touched
// path.
func reaches(touched map[string]bool, dir string) bool {
	if dir == "." || dir == "" {
		return true
	}
	for t := range touched {
		if t == dir || strings.HasPrefix(t, dir+"/") || strings.HasPrefix(dir, t+"/") {
			return true
		}
	}
	return false
}

// commitTree writes a commit of tree on top of HEAD (if any) and moves the
// branch to it. It returns false, and writes nothing, when the tree is
// HEAD's and empty commits are not allowed.
func (r *Repo) commitTree(tree plumbing.Hash, author, committer *object.Signature, message string, allowEmpty bool) (plumbing.Hash, bool, error) {
	var parents []plumbing.Hash
	if head, err := r.git.Head(); err == nil {
		parent, err := r.git.CommitObject(head.Hash())
		if err != nil {
			return plumbing.ZeroHash, false, fmt.Errorf("read HEAD commit: %w", err)
		}
		if parent.TreeHash == tree && !allowEmpty {
			return head.Hash(), false, nil
		}
		parents = []plumbing.Hash{head.Hash()}
	}
	c := &object.Commit{Author: *author, Committer: *committer, Message: message + "\n", TreeHash: tree, ParentHashes: parents}
	obj := r.git.Storer.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return plumbing.ZeroHash, false, fmt.Errorf("encode commit: %w", err)
	}
	h, err := r.git.Storer.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, false, fmt.Errorf("store commit: %w", err)
	}
	if err := r.git.Storer.SetReference(plumbing.NewHashReference(r.branchRef(), h)); err != nil {
		return plumbing.ZeroHash, false, fmt.Errorf("move branch: %w", err)
	}
	return h, true, nil
}
