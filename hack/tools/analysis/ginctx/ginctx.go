// Package ginctx reports a *gin.Context used where a context.Context is
// expected.
//
// gin recycles its Context for the next request as soon as a handler
// returns, but *gin.Context also satisfies context.Context. Code that hands
// it to a client (controller-runtime, net/http, a logger) gives goroutines
// that outlive the handler a context that will be reset under them: a data
// race, and a way for one request's cancellation to reach another's calls.
// Handlers must pass c.Request.Context() instead.
package ginctx

import (
	"go/ast"
	"go/types"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/passes/inspect"
	"golang.org/x/tools/go/ast/inspector"
)

// Analyzer is the check; run it with `go vet -vettool`.
var Analyzer = &analysis.Analyzer{
	Name:     "ginctx",
	Doc:      "reports a *gin.Context passed, assigned or returned where a context.Context is expected (use c.Request.Context())",
	Requires: []*analysis.Analyzer{inspect.Analyzer},
	Run:      run,
}

func run(pass *analysis.Pass) (any, error) {
	ins := pass.ResultOf[inspect.Analyzer].(*inspector.Inspector)
	check := func(e ast.Expr, want types.Type) {
		if want == nil || !isContext(want) || !isGinContext(pass.TypesInfo.TypeOf(e)) {
			return
		}
		pass.Reportf(e.Pos(), "*gin.Context used as a context.Context: gin reuses it after the handler returns; pass c.Request.Context()")
	}
	nodes := []ast.Node{(*ast.CallExpr)(nil), (*ast.AssignStmt)(nil), (*ast.ValueSpec)(nil),
		(*ast.ReturnStmt)(nil), (*ast.CompositeLit)(nil), (*ast.FuncLit)(nil), (*ast.FuncDecl)(nil)}
	// Return statements need the signature of the function they leave.
	var sigs []*types.Signature
	ins.Nodes(nodes, func(n ast.Node, push bool) bool {
		switch n := n.(type) {
		case *ast.FuncDecl:
			sigs = pushSig(sigs, push, pass.TypesInfo.Defs[n.Name])
		case *ast.FuncLit:
			if t, ok := pass.TypesInfo.TypeOf(n).(*types.Signature); ok {
				sigs = pushSigType(sigs, push, t)
			}
		}
		if !push {
			return true
		}
		switch n := n.(type) {
		case *ast.CallExpr:
			checkCall(pass, n, check)
		case *ast.AssignStmt:
			if len(n.Lhs) == len(n.Rhs) {
				for i := range n.Lhs {
					check(n.Rhs[i], pass.TypesInfo.TypeOf(n.Lhs[i]))
				}
			}
		case *ast.ValueSpec:
			if n.Type != nil {
				for _, v := range n.Values {
					check(v, pass.TypesInfo.TypeOf(n.Type))
				}
			}
		case *ast.ReturnStmt:
			if len(sigs) > 0 {
				res := sigs[len(sigs)-1].Results()
				if res.Len() == len(n.Results) {
					for i, r := range n.Results {
						check(r, res.At(i).Type())
					}
				}
			}
		case *ast.CompositeLit:
			checkComposite(pass, n, check)
		}
		return true
	})
	return nil, nil
}

func pushSig(sigs []*types.Signature, push bool, obj types.Object) []*types.Signature {
	fn, ok := obj.(*types.Func)
	if !ok {
		if push {
			return append(sigs, types.NewSignatureType(nil, nil, nil, nil, nil, false))
		}
		return sigs[:len(sigs)-1]
	}
	return pushSigType(sigs, push, fn.Type().(*types.Signature))
}

func pushSigType(sigs []*types.Signature, push bool, sig *types.Signature) []*types.Signature {
	if push {
		return append(sigs, sig)
	}
	return sigs[:len(sigs)-1]
}

func checkCall(pass *analysis.Pass, call *ast.CallExpr, check func(ast.Expr, types.Type)) {
	tv, ok := pass.TypesInfo.Types[call.Fun]
	if !ok {
		return
	}
	if tv.IsType() { // a conversion: context.Context(c)
		if len(call.Args) == 1 {
			check(call.Args[0], tv.Type)
		}
		return
	}
	sig, ok := tv.Type.Underlying().(*types.Signature)
	if !ok {
		return
	}
	params := sig.Params()
	for i, arg := range call.Args {
		switch {
		case sig.Variadic() && i >= params.Len()-1:
			last := params.At(params.Len() - 1).Type()
			if call.Ellipsis.IsValid() {
				check(arg, last)
			} else if s, ok := last.(*types.Slice); ok {
				check(arg, s.Elem())
			}
		case i < params.Len():
			check(arg, params.At(i).Type())
		}
	}
}

func checkComposite(pass *analysis.Pass, lit *ast.CompositeLit, check func(ast.Expr, types.Type)) {
	t := pass.TypesInfo.TypeOf(lit)
	if t == nil {
		return
	}
	switch u := t.Underlying().(type) {
	case *types.Struct:
		for i, el := range lit.Elts {
			if kv, ok := el.(*ast.KeyValueExpr); ok {
				if id, ok := kv.Key.(*ast.Ident); ok {
					if f, ok := pass.TypesInfo.ObjectOf(id).(*types.Var); ok {
						check(kv.Value, f.Type())
					}
				}
			} else if i < u.NumFields() {
				check(el, u.Field(i).Type())
			}
		}
	case *types.Slice:
		checkElems(lit, u.Elem(), check)
	case *types.Array:
		checkElems(lit, u.Elem(), check)
	case *types.Map:
		checkElems(lit, u.Elem(), check)
	}
}

func checkElems(lit *ast.CompositeLit, elem types.Type, check func(ast.Expr, types.Type)) {
	for _, el := range lit.Elts {
		if kv, ok := el.(*ast.KeyValueExpr); ok {
			el = kv.Value
		}
		check(el, elem)
	}
}

// isContext reports whether t is context.Context.
func isContext(t types.Type) bool {
	return isNamed(t, "context", "Context")
}

// isGinContext reports whether t is *gin.Context.
func isGinContext(t types.Type) bool {
	p, ok := t.(*types.Pointer)
	return ok && isNamed(p.Elem(), "github.com/gin-gonic/gin", "Context")
}

func isNamed(t types.Type, pkg, name string) bool {
	n, ok := types.Unalias(t).(*types.Named)
	if !ok {
		return false
	}
	obj := n.Obj()
	return obj.Name() == name && obj.Pkg() != nil && obj.Pkg().Path() == pkg
}
