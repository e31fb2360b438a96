package shop_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The shop is the domain: it knows no HTTP. Its errors carry platform's
// kinds, which StatusOf maps to statuses, and its mails go through a
// Sender, whose HTTP adapter the services wire.
func TestTheShopImportsNoHTTP(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		ast, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range ast.Imports {
			if path, _ := strconv.Unquote(imp.Path.Value); path == "net/http" || strings.HasPrefix(path, "net/http/") {
				t.Errorf("%s imports %s", f, path)
			}
		}
	}
}
