// Command dbcheck reports database calls whose error nobody looks at: a
// GORM chain used as a statement (db.Where(…).Take(&x) without .Error), or
// its .Error thrown away with "_ =". An export that silently comes back
// incomplete starts with one of these. It runs in ./test.sh, so CI keeps it.
//
//	go run ./cmd/dbcheck ./...
package main

import (
	"go/ast"
	"go/types"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/singlechecker"
)

// Analyzer finds unchecked GORM results.
var Analyzer = &analysis.Analyzer{
	Name: "dbcheck",
	Doc:  "reports GORM calls whose error is not checked",
	Run:  run,
}

func main() { singlechecker.Main(Analyzer) }

// isGormDB reports whether t is *gorm.DB.
func isGormDB(t types.Type) bool {
	p, ok := t.(*types.Pointer)
	if !ok {
		return false
	}
	n, ok := p.Elem().(*types.Named)
	return ok && n.Obj().Name() == "DB" && n.Obj().Pkg() != nil && n.Obj().Pkg().Path() == "gorm.io/gorm"
}

func run(pass *analysis.Pass) (any, error) {
	for _, f := range pass.Files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch s := n.(type) {
			case *ast.ExprStmt:
				call, ok := s.X.(*ast.CallExpr)
				if !ok {
					return true
				}
				if tv, ok := pass.TypesInfo.Types[call]; ok && isGormDB(tv.Type) {
					pass.Reportf(call.Pos(), "the database call's error is not checked (add .Error and handle it)")
				}
			case *ast.AssignStmt:
				for i, lhs := range s.Lhs {
					id, ok := lhs.(*ast.Ident)
					if !ok || id.Name != "_" || i >= len(s.Rhs) {
						continue
					}
					sel, ok := s.Rhs[i].(*ast.SelectorExpr)
					if !ok || sel.Sel.Name != "Error" {
						continue
					}
					if tv, ok := pass.TypesInfo.Types[sel.X]; ok && isGormDB(tv.Type) {
						pass.Reportf(s.Pos(), "the database call's error is thrown away")
					}
				}
			}
			return true
		})
	}
	return nil, nil
}
