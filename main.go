// Command minilambda is Mini Lambda: a self-hosted serverless platform
// whose functions are Docker images and whose state is one event log.
//
//	minilambda [serve] [--addr ADDR] [--db FILE]   run the server
//	minilambda dump    --db FILE [--from SEQ] [--type T] [--function ID]
//	minilambda audit   --db FILE
//	minilambda rebuild --db FILE
//	minilambda migrate --db FILE --from functions.json
//
// Exit status: 0 done, 1 failed, 2 a mistake in the command line, 3 the
// event log file is damaged or is not an event log.
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
	"slices"
	"strings"
	"syscall"
	// Schedules name IANA zones; a server in a scratch image has no
	// zoneinfo of its own.
	_ "time/tzdata"

	"github.com/minilambda/minilambda/eventlog"
	"github.com/minilambda/minilambda/migrate"
	"github.com/minilambda/minilambda/projections"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "minilambda:", err)
		os.Exit(exitCode(err))
	}
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ error }

// errViewsUnreadable means the stored views do not decode: the rebuild
// command makes them again from the events.
var errViewsUnreadable = errors.New("the stored views do not decode")

// exitCode is the exit status for err: 2 for a usage error, 3 when the
// event log file is damaged or is not an event log, 1 for anything else.
func exitCode(err error) int {
	var u usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &u):
		return 2
	case errors.Is(err, eventlog.ErrCorrupt), errors.Is(err, eventlog.ErrViewsDiffer), errors.Is(err, errViewsUnreadable):
		return 3
	}
	return 1
}

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
	case "rebuild":
		return rebuild(ctx, args, stdout, stderr)
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
  minilambda audit   --db FILE                            check the file, the hash chain and the views
  minilambda rebuild --db FILE                            rebuild the views from the events
  minilambda migrate --db FILE --from functions.json
Every flag can also be set as MINILAMBDA_<FLAG> (MINILAMBDA_DB, MINILAMBDA_ADDR, ...).
Exit status: 0 done, 1 failed, 2 usage error, 3 the event log file is damaged
or is not an event log (audit names the page or seq; rebuild repairs the views).
`

// envDefaults takes the default of each flag registered on fs from the
// environment variable MINILAMBDA_<FLAG> (the flag's name in capitals,
// dashes as underscores: MINILAMBDA_MAX_IN_FLIGHT for --max-in-flight),
// when that is set; names, when given, limit it to the flags so named. A
// flag given on the command line still wins, and the help shows the
// default as the variable made it. Call it after registering the flags
// and before parsing them.
//
// A variable is read as the flag would read the same text on the command
// line, and one it cannot parse is a usage error naming the variable: a
// mistyped MINILAMBDA_GRACE=soon must not run the server with a grace
// nobody chose.
func envDefaults(fs *flag.FlagSet, names ...string) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || (len(names) > 0 && !slices.Contains(names, f.Name)) {
			return
		}
		name := "MINILAMBDA_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = usageError{fmt.Errorf("%s: %s=%q: %v", fs.Name(), name, v, serr)}
			return
		}
		f.DefValue = f.Value.String()
	})
	return err
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
	db := fs.String("db", defaultDB(), "the event log file")
	from := fs.Uint64("from", 1, "first seq to print")
	typ := fs.String("type", "", "print only events of this type")
	fn := fs.String("function", "", "print only events about this function id")
	if err := envDefaults(fs, "db"); err != nil {
		return err
	}
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
		err := enc.Encode(e)
		var bad *json.MarshalerError
		if errors.As(err, &bad) {
			// Only data that is not JSON fails to encode: appends refuse it.
			return fmt.Errorf("%w: seq %d: data is not JSON: %v", eventlog.ErrCorrupt, e.Seq, err)
		}
		return err
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	if errors.Is(err, syscall.EPIPE) {
		return nil // the reader went away (| head): not our failure
	}
	if err != nil {
		return fmt.Errorf("dump %s: %w", *db, err)
	}
	return nil
}

// progressTo shows a command's progress through the log on w, when w is a
// terminal; nil otherwise.
func progressTo(w io.Writer, command string) func(done, total uint64) {
	if !isTerminal(w) {
		return nil
	}
	return func(done, total uint64) {
		fmt.Fprintf(w, "\r%s: %d/%d events checked", command, done, total)
		if done == total {
			fmt.Fprintln(w)
		}
	}
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
	db := fs.String("db", defaultDB(), "the event log file")
	if err := envDefaults(fs, "db"); err != nil {
		return err
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	l, err := openReadOnly(*db)
	if err != nil {
		return err
	}
	defer l.Close()
	defer tuneGC()()
	progress := progressTo(stderr, "audit")
	sum, err := l.Verify(ctx, projections.Projector{}, progress)
	if err != nil {
		if progress != nil {
			fmt.Fprintln(stderr)
		}
		return fmt.Errorf("audit of %s failed: %w", *db, err)
	}
	fmt.Fprintf(stdout, "audit ok: %d events, hash chain intact, head %s, %d view entries equal a rebuild\n", sum.Events, sum.Head, sum.Keys)
	return nil
}

// rebuild drops the views and makes them again from the events, once the
// pages and the hash chain are known to be sound: the repair for views that
// do not decode or differ from the events.
func rebuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("rebuild", stderr)
	db := fs.String("db", defaultDB(), "the event log file")
	if err := envDefaults(fs, "db"); err != nil {
		return err
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if _, err := os.Stat(*db); err != nil {
		return fmt.Errorf("event log %s: %w", *db, err)
	}
	defer tuneGC()()
	progress := progressTo(stderr, "rebuild")
	// Read-only first: a rebuild refused leaves the file as it was.
	l, err := eventlog.Open(*db, eventlog.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	sum, err := l.VerifyChain(ctx, progress)
	l.Close()
	if err != nil {
		return fmt.Errorf("rebuild of %s refused: the events themselves are damaged, and the views can only be rebuilt from sound ones: %w", *db, err)
	}
	// No projector: opening must not read the views it is to replace.
	if l, err = eventlog.Open(*db, eventlog.Options{}); err != nil {
		return err
	}
	defer l.Close()
	if err := l.Rebuild(ctx, projections.Projector{}); err != nil {
		return fmt.Errorf("rebuild of %s: %w", *db, err)
	}
	fmt.Fprintf(stdout, "rebuild ok: %d events, hash chain intact, head %s, views rebuilt\n", sum.Events, sum.Head)
	return nil
}

// openLog opens the log for serve and reads what the API reads first, as
// it would: the newest invocations with the events that ended them, and
// the functions. A server that refuses to start says what to run; one that
// starts would answer 500.
func openLog(path string, opts eventlog.Options) (*eventlog.Log, error) {
	l, err := eventlog.Open(path, opts)
	if err != nil {
		return nil, err
	}
	if err := sampleViews(projections.NewViews(l)); err != nil {
		l.Close()
		return nil, fmt.Errorf("event log %s: %w (%v); run `minilambda rebuild --db %s`, which checks the hash chain and rebuilds the views from the events", path, errViewsUnreadable, err, path)
	}
	return l, nil
}

// sampleViews decodes a bounded sample of the views: the newest
// invocations (one page of the largest size), their ending events, and the
// live functions with their versions.
func sampleViews(v *projections.Views) error {
	if _, _, err := v.Invocations(projections.InvocationQuery{Limit: projections.MaxLimit}); err != nil {
		return err
	}
	fns, err := v.Functions()
	if err != nil {
		return err
	}
	for i, f := range fns {
		if i == projections.MaxLimit {
			break
		}
		if _, err := v.FunctionVersions(f.ID); err != nil {
			return err
		}
	}
	return nil
}

func migrateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("migrate", stderr)
	db := fs.String("db", defaultDB(), "the event log file (created if missing)")
	from := fs.String("from", "", "the legacy functions.json to import")
	if err := envDefaults(fs, "db"); err != nil {
		return err
	}
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
