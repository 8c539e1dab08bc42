package store

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageRules: gorm types never appear in the exported API, the
// package never reads the clock and never prints, and every exported
// method takes a context first (Close and Path excepted).
func TestPackageRules(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if sel, ok := n.(*ast.SelectorExpr); ok {
				if x, ok := sel.X.(*ast.Ident); ok {
					switch x.Name + "." + sel.Sel.Name {
					case "time.Now", "time.Since", "time.Until", "fmt.Print", "fmt.Printf", "fmt.Println", "os.Stdout", "os.Stderr", "log.Print", "log.Printf", "log.Println":
						t.Errorf("%s: %s.%s", fset.Position(sel.Pos()), x.Name, sel.Sel.Name)
					}
				}
			}
			return true
		})
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if !d.Name.IsExported() || (d.Recv != nil && !exportedRecv(d.Recv)) {
					continue
				}
				if mentionsGorm(d.Type) {
					t.Errorf("%s: %s exposes gorm", fset.Position(d.Pos()), d.Name.Name)
				}
				if d.Recv != nil && d.Name.Name != "Close" && d.Name.Name != "Path" && recvName(d.Recv) == "Store" {
					ps := d.Type.Params.List
					if len(ps) == 0 || exprString(ps[0].Type) != "context.Context" {
						t.Errorf("%s: %s does not take a context first", fset.Position(d.Pos()), d.Name.Name)
					}
				}
			case *ast.GenDecl:
				for _, sp := range d.Specs {
					ts, ok := sp.(*ast.TypeSpec)
					if !ok || !ts.Name.IsExported() {
						continue
					}
					if st, ok := ts.Type.(*ast.StructType); ok {
						for _, fl := range st.Fields.List {
							exported := len(fl.Names) == 0
							for _, n := range fl.Names {
								exported = exported || n.IsExported()
							}
							if exported && mentionsGorm(fl.Type) {
								t.Errorf("%s: %s exposes gorm", fset.Position(fl.Pos()), ts.Name.Name)
							}
						}
					} else if mentionsGorm(ts.Type) {
						t.Errorf("%s: %s exposes gorm", fset.Position(ts.Pos()), ts.Name.Name)
					}
				}
			}
		}
	}
}

func recvName(r *ast.FieldList) string {
	e := r.List[0].Type
	if s, ok := e.(*ast.StarExpr); ok {
		e = s.X
	}
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

func exportedRecv(r *ast.FieldList) bool { return ast.IsExported(recvName(r)) }

func mentionsGorm(n ast.Node) bool {
	found := false
	ast.Inspect(n, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if x, ok := sel.X.(*ast.Ident); ok && (x.Name == "gorm" || x.Name == "sqlite" || x.Name == "logger") {
				found = true
			}
		}
		return !found
	})
	return found
}

func exprString(e ast.Expr) string {
	if sel, ok := e.(*ast.SelectorExpr); ok {
		if x, ok := sel.X.(*ast.Ident); ok {
			return x.Name + "." + sel.Sel.Name
		}
	}
	return ""
}
