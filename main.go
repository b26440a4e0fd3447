// Command minilambda is Mini Lambda: a self-hosted serverless platform
// whose functions are Docker images and whose state is one event log.
//
//	minilambda [serve] [--addr ADDR] [--db FILE]   run the server
//	minilambda dump    --db FILE [--from SEQ] [--type T] [--function ID]
//	minilambda audit   --db FILE
//	minilambda migrate --db FILE --from functions.json
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/migrate"
	"github.com/minilambda/minilambda/projections"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	var u usageError
	switch {
	case err == nil:
	case errors.As(err, &u):
		fmt.Fprintln(os.Stderr, "minilambda:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "minilambda:", err)
		os.Exit(1)
	}
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ error }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, args, stderr)
	case "dump":
		return dump(ctx, args, stdout, stderr)
	case "audit":
		return audit(ctx, args, stdout, stderr)
	case "migrate":
		return migrateCmd(ctx, args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return usageError{fmt.Errorf("unknown command %q\n%s", cmd, usage)}
}

const usage = `usage:
  minilambda [serve] [--addr 127.0.0.1:8300] [--db FILE]   run the server
  minilambda dump    --db FILE [--from SEQ] [--type T] [--function ID]
  minilambda audit   --db FILE
  minilambda migrate --db FILE --from functions.json
Every flag can also be set as MINILAMBDA_<FLAG> (MINILAMBDA_DB, MINILAMBDA_ADDR, ...).
`

// env returns MINILAMBDA_<name> or def.
func env(name, def string) string {
	if v, ok := os.LookupEnv("MINILAMBDA_" + name); ok {
		return v
	}
	return def
}

// defaultDB is where the event log lives unless --db says otherwise: the
// user's data directory, as XDG has it.
func defaultDB() string {
	dir := os.Getenv("XDG_DATA_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "minilambda.db"
		}
		dir = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(dir, "minilambda", "events.db")
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return usageError{errors.New("help requested")}
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))}
	}
	return nil
}

// openReadOnly opens an existing log for the offline readers; it never
// creates one.
func openReadOnly(path string) (*eventlog.Log, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("event log %s: %w", path, err)
	}
	return eventlog.Open(path, eventlog.Options{ReadOnly: true})
}

func dump(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dump", stderr)
	db := fs.String("db", env("DB", defaultDB()), "the event log file")
	from := fs.Uint64("from", 1, "first seq to print")
	typ := fs.String("type", "", "print only events of this type")
	fn := fs.String("function", "", "print only events about this function id")
	if err := parse(fs, args); err != nil {
		return err
	}
	l, err := openReadOnly(*db)
	if err != nil {
		return err
	}
	defer l.Close()
	w := bufio.NewWriterSize(stdout, 64<<10)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	err = l.Read(ctx, *from, eventlog.Filter{Type: *typ, FunctionID: *fn}, func(e eventlog.Event) error {
		return enc.Encode(e)
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if errors.Is(err, syscall.EPIPE) {
		return nil // the reader went away (| head): not our failure
	}
	return err
}

// isTerminal reports whether w is a terminal, where progress is shown.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func audit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("audit", stderr)
	db := fs.String("db", env("DB", defaultDB()), "the event log file")
	if err := parse(fs, args); err != nil {
		return err
	}
	l, err := openReadOnly(*db)
	if err != nil {
		return err
	}
	defer l.Close()
	defer tuneGC()()
	var progress func(done, total uint64)
	if isTerminal(stderr) {
		progress = func(done, total uint64) {
			fmt.Fprintf(stderr, "\raudit: %d/%d events checked", done, total)
			if done == total {
				fmt.Fprintln(stderr)
			}
		}
	}
	sum, err := l.Verify(ctx, projections.Projector{}, progress)
	if err != nil {
		if progress != nil {
			fmt.Fprintln(stderr)
		}
		return fmt.Errorf("audit failed: %w", err)
	}
	fmt.Fprintf(stdout, "audit ok: %d events, hash chain intact, head %s, %d view entries equal a rebuild\n", sum.Events, sum.Head, sum.Keys)
	return nil
}

func migrateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("migrate", stderr)
	db := fs.String("db", env("DB", defaultDB()), "the event log file (created if missing)")
	from := fs.String("from", "", "the legacy functions.json to import")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *from == "" {
		return usageError{errors.New("migrate: --from functions.json is required")}
	}
	f, err := os.Open(*from)
	if err != nil {
		return err
	}
	entries, err := migrate.Parse(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w (nothing was imported)", *from, err)
	}
	if err := os.MkdirAll(filepath.Dir(*db), 0o700); err != nil {
		return err
	}
	// Opening may rebuild the views.
	defer tuneGC()()
	l, err := eventlog.Open(*db, eventlog.Options{Projector: projections.Projector{}})
	if err != nil {
		return err
	}
	defer l.Close()
	if isTerminal(stderr) {
		fmt.Fprintf(stderr, "migrate: importing %d functions from %s into %s\n", len(entries), *from, *db)
	}
	rep, err := migrate.Import(ctx, l, entries)
	if err != nil {
		return fmt.Errorf("import: %w (nothing was imported)", err)
	}
	for _, f := range rep.Imported {
		if f.OriginalName != "" {
			fmt.Fprintf(stdout, "imported %s as %q: the name %q was taken\n", f.ID, f.Name, f.OriginalName)
		} else {
			fmt.Fprintf(stdout, "imported %s as %q\n", f.ID, f.Name)
		}
	}
	fmt.Fprintf(stdout, "migrate: %d imported, %d already present\n", len(rep.Imported), rep.Skipped)
	return nil
}
