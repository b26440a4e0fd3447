package migrate_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/function"
	"github.com/minilambda/minilambda/migrate"
	"github.com/minilambda/minilambda/projections"
)

func openLog(t *testing.T) *eventlog.Log {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	l, err := eventlog.Open(path, eventlog.Options{Projector: projections.Projector{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := l.Verify(context.Background(), projections.Projector{}, nil); err != nil {
			t.Errorf("verify: %v", err)
		}
		l.Close()
	})
	return l
}

func parseFile(t *testing.T, name string) ([]migrate.Legacy, error) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return migrate.Parse(f)
}

func TestImportKeepsEverything(t *testing.T) {
	l := openLog(t)
	entries, err := parseFile(t, "functions.json")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := migrate.Import(context.Background(), l, entries)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Imported) != 3 || rep.Skipped != 0 {
		t.Fatalf("report %+v", rep)
	}
	views := projections.NewViews(l)
	fns, err := views.Functions()
	if err != nil || len(fns) != 3 {
		t.Fatalf("functions %v %v", fns, err)
	}
	// Oldest first: resize (September), then the two test-lambdas.
	if fns[0].Name != "resize.images" || fns[1].ID != "5ac94553-cd05-4cc0-b657-acae0c6559e1" {
		t.Fatalf("order: %+v", fns)
	}
	want, _ := time.Parse(time.RFC3339Nano, "2025-10-16T16:24:48.719407+05:45")
	f, err := views.Function("5ac94553-cd05-4cc0-b657-acae0c6559e1")
	if err != nil {
		t.Fatal(err)
	}
	if !f.CreatedAt.Equal(want) || f.Name != "test-lambda" || f.Image != "test-lambda" || !f.Imported {
		t.Fatalf("imported function %+v", f)
	}
	// The younger of two functions sharing a name keeps its id and image,
	// and is renamed with its id's first 8 characters.
	g, err := views.Function("9f2b7c1e-0d3a-4e8b-a6c5-1f2e3d4c5b6a")
	if err != nil {
		t.Fatal(err)
	}
	if g.Name != "test-lambda-9f2b7c1e" || g.OriginalName != "test-lambda" || g.Image != "test-lambda:v2" {
		t.Fatalf("renamed function %+v", g)
	}
	if byName, err := views.Function("test-lambda"); err != nil || byName.ID != f.ID {
		t.Fatalf("by name: %+v %v", byName, err)
	}
}

func TestImportIsIdempotent(t *testing.T) {
	l := openLog(t)
	entries, err := parseFile(t, "functions.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrate.Import(context.Background(), l, entries); err != nil {
		t.Fatal(err)
	}
	head, hash := l.Head()
	rep, err := migrate.Import(context.Background(), l, entries)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Imported) != 0 || rep.Skipped != 3 {
		t.Fatalf("second run: %+v", rep)
	}
	if h2, hash2 := l.Head(); h2 != head || hash2 != hash {
		t.Fatalf("second run appended: head %d -> %d", head, h2)
	}
}

func TestImportDoesNotResurrectDeleted(t *testing.T) {
	l := openLog(t)
	entries, _ := parseFile(t, "functions.json")
	if _, err := migrate.Import(context.Background(), l, entries); err != nil {
		t.Fatal(err)
	}
	del, _ := projections.NewFunctionDeleted(entries[0].ID)
	if _, err := l.Append(context.Background(), del); err != nil {
		t.Fatal(err)
	}
	rep, err := migrate.Import(context.Background(), l, entries)
	if err != nil || len(rep.Imported) != 0 {
		t.Fatalf("rerun after delete: %+v %v", rep, err)
	}
}

func TestImportRenamesAroundLiveFunctions(t *testing.T) {
	l := openLog(t)
	reg, _ := projections.NewFunctionRegistered("01JLIVE", projections.FunctionRegistered{
		Spec: function.Spec{Name: "resize.images", Image: "other"}, CreatedAt: time.Now(),
	})
	if _, err := l.Append(context.Background(), reg); err != nil {
		t.Fatal(err)
	}
	entries, _ := parseFile(t, "functions.json")
	rep, err := migrate.Import(context.Background(), l, entries)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Imported[0].Name != "resize.images-c0ffee00" {
		t.Fatalf("clash with a live function: %+v", rep.Imported[0])
	}
}

func TestBadFilesWriteNothing(t *testing.T) {
	for _, tc := range []struct{ file, entry, says string }{
		{"bad-missing-image.json", "11111111-2222-3333-4444-555555555555", `missing "image"`},
		{"bad-timestamp.json", "22222222-2222-3333-4444-555555555555", "created_at"},
		{"bad-naive-timestamp.json", "33333333-2222-3333-4444-555555555555", "UTC offset"},
		{"bad-id-mismatch.json", "44444444-2222-3333-4444-555555555555", "differs from its key"},
		{"bad-truncated.json", "66666666-2222-3333-4444-555555555555", ""},
		{"bad-array.json", "", "JSON object"},
		{"bad-name.json", "88888888-2222-3333-4444-555555555555", "letters, digits"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := parseFile(t, tc.file)
			if !errors.Is(err, migrate.ErrBadFile) {
				t.Fatalf("err %v, want ErrBadFile", err)
			}
			if !strings.Contains(err.Error(), tc.entry) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %q should name entry %q and say %q", err, tc.entry, tc.says)
			}
		})
	}
}

func TestParseRejectsDuplicateKeysAndTrailingData(t *testing.T) {
	one := `"a1": {"id": "a1", "name": "n", "image": "i", "created_at": "2025-10-16T16:24:48Z"}`
	for _, doc := range []string{"{" + one + "," + one + "}", "{" + one + "} {}"} {
		if _, err := migrate.Parse(strings.NewReader(doc)); !errors.Is(err, migrate.ErrBadFile) {
			t.Errorf("%s: %v", doc, err)
		}
	}
	if got, err := migrate.Parse(strings.NewReader("{}")); err != nil || len(got) != 0 {
		t.Errorf("empty object: %v %v", got, err)
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, name := range files {
		b, _ := os.ReadFile(name)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := migrate.Parse(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, migrate.ErrBadFile) {
				t.Fatalf("error not ErrBadFile: %v", err)
			}
			return
		}
		for _, e := range entries {
			if e.ID == "" || e.Name == "" || e.Image == "" || e.CreatedAt.IsZero() && !strings.Contains(string(data), "0001-01-01") {
				t.Fatalf("accepted an incomplete entry %+v", e)
			}
		}
	})
}
