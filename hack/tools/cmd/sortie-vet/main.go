// Command sortie-vet runs Sortie's own static checks as a go vet tool:
//
//	go vet -vettool=$(go env GOPATH)/bin/sortie-vet ./...
//
// `make lint` builds and runs it over every module.
package main

import (
	"golang.org/x/tools/go/analysis/unitchecker"

	"sortie.dev/hack/tools/analysis/ginctx"
)

func main() {
	unitchecker.Main(ginctx.Analyzer)
}
