package ginctx_test

import (
	"testing"

	"golang.org/x/tools/go/analysis/analysistest"

	"sortie.dev/hack/tools/analysis/ginctx"
)

// The planted misuses in testdata/src/example are each reported, and the
// correct uses beside them are not.
func TestAnalyzer(t *testing.T) {
	analysistest.Run(t, analysistest.TestData(), ginctx.Analyzer, "example")
}
