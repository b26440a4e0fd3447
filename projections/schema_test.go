package projections_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/minilambda/minilambda/projections"
)

// TestSchemaHasEveryType: every Type constant in events.go is in the
// schema, under its name without "Type", and the schema has no other;
// members come from the payloads' json tags, embedded structs flattened.
func TestSchemaHasEveryType(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "events.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	defined := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, id := range vs.Names {
			if !strings.HasPrefix(id.Name, "Type") || i >= len(vs.Values) {
				continue
			}
			if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
				defined[strings.TrimPrefix(id.Name, "Type")], _ = strconv.Unquote(lit.Value)
			}
		}
		return true
	})
	if len(defined) < 20 {
		t.Fatalf("found %d event types in events.go: %v", len(defined), defined)
	}
	schema := projections.Schema()
	for name, typ := range defined {
		if e, ok := schema[name]; !ok || e.Type != typ {
			t.Errorf("%s (%s): the schema has %+v", name, typ, e)
		}
	}
	for name := range schema {
		if _, ok := defined[name]; !ok {
			t.Errorf("the schema's %s is no Type constant of events.go", name)
		}
	}
	for name, want := range map[string][]string{
		"InvocationQueued":    {"v", "function_name", "function_version", "async", "trace_id", "schedule_id"},
		"FunctionRegistered":  {"v", "name", "image", "timeout", "http_trigger", "created_at"},
		"InvocationCompleted": {"attempt", "duration_ms", "exit_code", "init_duration", "error_type", "error"},
	} {
		for _, m := range want {
			if !slices.Contains(schema[name].Members, m) {
				t.Errorf("%s's members %v lack %q", name, schema[name].Members, m)
			}
		}
		if slices.Contains(schema[name].Members, "Spec") {
			t.Errorf("%s's members name the embedded Spec: %v", name, schema[name].Members)
		}
	}
}
