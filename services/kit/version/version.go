// Package version reports the build's version, stamped at build time with
//
//	-ldflags "-X sortie.dev/services/kit/version.Version=v0.1.0 -X sortie.dev/services/kit/version.Commit=abc123"
package version

// Set by the linker; these are the only package-level variables kit has and
// they never change after start.
var (
	Version = "dev"
	Commit  = "unknown"
)

// String is "Version (Commit)".
func String() string { return Version + " (" + Commit + ")" }
