// Package starter is the content a new library starts with when it has no
// remote to clone, so that a fresh install has something useful to show.
package starter

import (
	"embed"
	"io/fs"
)

//go:embed content
var content embed.FS

// FS returns the starter content, laid out as the repository is.
func FS() fs.FS {
	sub, err := fs.Sub(content, "content")
	if err != nil {
		panic(err) // the embedded folder is always there
	}
	return sub
}
