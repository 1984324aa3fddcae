package service

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"careloop/model"
)

// Every exported use case a staff member calls (its principal is named
// "by") checks the caller's action itself, so that no route, job or future
// endpoint can reach it unchecked. Helpers that only record or serve
// another checked action are listed with their reason.
func TestStaffMethodsCheckTheirAction(t *testing.T) {
	exempt := map[string]string{
		"Audit.Record":   "writes the audit entry of an action checked by its caller",
		"Staff.Me":       "every staff member reads their own account",
		"Auth.Logout":    "everyone may end their own session",
		"Auth.ChangeOwn": "everyone may change their own password",
	}
	files, _ := filepath.Glob("*.go")
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || !fn.Name.IsExported() || !takesBy(fn) {
				continue
			}
			method := recvName(fn) + "." + fn.Name.Name
			if exempt[method] != "" {
				continue
			}
			checked++
			if !callsCheck(fn.Body) {
				t.Errorf("%s (%s) takes a staff principal but checks no action (by.must, mayAnswer)", method, fset.Position(fn.Pos()))
			}
		}
	}
	if checked < 60 {
		t.Fatalf("only %d staff methods found", checked)
	}
}

func takesBy(fn *ast.FuncDecl) bool {
	for _, p := range fn.Type.Params.List {
		id, ok := p.Type.(*ast.Ident)
		if !ok || id.Name != "Principal" {
			continue
		}
		for _, n := range p.Names {
			if n.Name == "by" {
				return true
			}
		}
	}
	return false
}

func recvName(fn *ast.FuncDecl) string {
	switch t := fn.Recv.List[0].Type.(type) {
	case *ast.StarExpr:
		return t.X.(*ast.Ident).Name
	case *ast.Ident:
		return t.Name
	}
	return "?"
}

func callsCheck(body *ast.BlockStmt) bool {
	found := false
	ast.Inspect(body, func(n ast.Node) bool {
		c, ok := n.(*ast.CallExpr)
		if !ok {
			return !found
		}
		switch f := c.Fun.(type) {
		case *ast.SelectorExpr:
			found = found || f.Sel.Name == "must"
		case *ast.Ident:
			found = found || f.Name == "mayAnswer"
		}
		return !found
	})
	return found
}

// The role table: admins may do everything, patients nothing, and each
// other role exactly what its row lists; an action not in the table is
// refused to everyone, admins too.
func TestRoleTableOfActions(t *testing.T) {
	for _, a := range Actions() {
		for _, role := range []string{model.RoleAdmin, model.RoleMarketing, model.RoleDoctor, model.RoleFrontDesk} {
			p := Principal{Kind: model.SubjectStaff, ID: 7, Role: role}
			want := false
			for _, r := range Roles(a) {
				want = want || r == role
			}
			if p.May(a) != want {
				t.Errorf("%s may %s: %v, want %v", role, a, p.May(a), want)
			}
		}
		if (Principal{Kind: model.SubjectPatient, ID: 7}).May(a) {
			t.Errorf("a patient may %s", a)
		}
		if (Principal{}).May(a) {
			t.Errorf("a zero principal may %s", a)
		}
	}
	admin := Principal{Kind: model.SubjectStaff, ID: 1, Role: model.RoleAdmin}
	if admin.May("made.up") {
		t.Error("an unknown action is allowed")
	}
	if err := (Principal{Kind: model.SubjectStaff, Role: model.RoleMarketing}).must(ActTasksWork); err != nil {
		t.Errorf("marketing works its tasks: %v", err)
	}
	if err := (Principal{Kind: model.SubjectStaff, Role: model.RoleMarketing}).must(ActReportsClinical); err != model.ErrForbidden {
		t.Errorf("marketing reads a report: %v", err)
	}
}
