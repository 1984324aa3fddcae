// Command careloop is the backend a hospital or health-checkup center runs to
// keep its patients close through WeChat.
//
//	careloop [-config FILE] [serve]   API, WeChat callbacks and workers in one process (default)
//	careloop [-config FILE] worker    background workers only
//	careloop [-config FILE] migrate [up|status]   apply the versioned migrations (or list them) and exit
//	careloop [-config FILE] import-patients FILE   import a HIS export (CSV or XLSX)
//	careloop [-config FILE] rotate-key  re-seal sensitive data under the current data key
//	careloop healthcheck              GET /healthz on CARELOOP_ADDR (for container health checks)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"careloop/app"
	"careloop/model"
	"careloop/service"
	"careloop/tabular"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "careloop:", err)
		os.Exit(1)
	}
}

const usage = `usage: careloop [-config FILE] [serve|worker|migrate]

  serve    API, WeChat callbacks and background workers in one process (default)
  worker   background workers only (scale these out beside the API servers)
  migrate [up|status]  apply the versioned database migrations not yet applied (up, the
           default), or list them with their state (status); instances take turns
  import-patients FILE  import patients from a HIS export (.csv or .xlsx); idempotent;
           refused rows go to FILE.errors.csv
  rotate-key  re-seal sensitive data under the current key of CARELOOP_DATA_KEYS and
           re-compute lookup hashes; runs beside a live service, resumable
  healthcheck  exit 0 when this host's careloop answers /healthz

Configuration comes from CARELOOP_* environment variables (see README.md)
and optionally a YAML file; with none, careloop runs in sandbox mode on an
embedded SQLite database with the WeChat sandbox and demo data.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	started := time.Now()
	fs := flag.NewFlagSet("careloop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	configPath := fs.String("config", "", "YAML configuration file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cmd := "serve"
	if fs.NArg() > 0 {
		cmd = fs.Arg(0)
	}
	if cmd == "healthcheck" {
		return healthcheck(ctx, getenv("CARELOOP_ADDR"))
	}
	cfg, err := app.Load(*configPath, getenv)
	if err != nil {
		return err
	}
	log := newLogger(stdout, cfg.LogLevel)
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch cmd {
	case "migrate":
		db, err := model.Open(ctx, model.OpenOptions{MySQLDSN: cfg.MySQLDSN, SQLitePath: cfg.SQLitePath(), MaxOpenConns: int(cfg.MySQLMaxConns)})
		if err != nil {
			return err
		}
		defer db.Close()
		switch fs.Arg(1) {
		case "", "up":
			if err := db.Migrate(ctx); err != nil {
				return err
			}
			log.Info("schema is up to date", "database", db.Dialect())
			return nil
		case "status":
			st, err := db.MigrationStatus(ctx)
			if err != nil {
				return err
			}
			for _, m := range st {
				state := "pending"
				if m.Applied {
					state = "applied " + m.AppliedAt.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(stdout, "%05d  %-40s  %s\n", m.Version, m.Name, state)
			}
			return nil
		default:
			return fmt.Errorf("usage: careloop migrate [up|status]")
		}
	case "import-patients":
		if fs.NArg() < 2 {
			return errors.New("usage: careloop import-patients FILE")
		}
		return importPatients(ctx, cfg, fs.Arg(1), stdout, stderr)
	case "rotate-key":
		return rotateKey(ctx, cfg, stdout)
	case "serve", "worker":
	default:
		fs.Usage()
		return fmt.Errorf("unknown command %q", cmd)
	}

	log.Info("starting", append([]any{"command", cmd}, cfg.Masked()...)...)
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close() // after every loop below has returned
	// Start-up hashes passwords (argon2 takes 19 MiB a time): give that
	// memory back now rather than whenever the scavenger gets to it.
	debug.FreeOSMemory()

	// A worker answers only health and metrics; serve answers everything.
	h := a.Router
	if cmd == "worker" {
		h = a.Ops
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	log.Info("listening", "command", cmd, "addr", ln.Addr().String(), "mode", cfg.Mode, "database", a.DB.Dialect(),
		"coord", a.Store.Kind(), "startup", time.Since(started).String())
	// Everything that runs is started here and awaited: the server, the
	// background loops, the opt-in profiler. When one stops (a signal, a
	// failure) the others are told to, and the database closes only after.
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		err := a.Serve(gctx, ln, h)
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		if err == nil && gctx.Err() == nil {
			err = errors.New("the server stopped")
		}
		return err
	})
	g.Go(func() error { return a.Run(gctx, cmd == "worker" || cfg.ServeWorkers) })
	if addr := getenv("CARELOOP_PPROF_ADDR"); addr != "" {
		g.Go(func() error { return servePprof(gctx, addr, log) })
	}
	if err := g.Wait(); err != nil && ctx.Err() == nil {
		return err
	}
	log.Info("stopped")
	return nil
}

// servePprof serves the Go profiler on addr (opt-in for operators; bind it
// to loopback) until ctx ends.
func servePprof(ctx context.Context, addr string, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	log.Warn("pprof listening", "addr", addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Warn("pprof", "err", err)
	}
	return nil
}

// rotateKey re-seals every sealed value under the current data key and
// re-computes the lookup hashes (CARELOOP_DATA_KEYS lists the keys, the
// current first). It runs beside a live service and may be run again.
func rotateKey(ctx context.Context, cfg app.Config, stdout io.Writer) error {
	sealer, err := cfg.Sealer()
	if err != nil {
		return err
	}
	model.UseSealer(sealer)
	db, err := model.Open(ctx, model.OpenOptions{MySQLDSN: cfg.MySQLDSN, SQLitePath: cfg.SQLitePath(), MaxOpenConns: int(cfg.MySQLMaxConns)})
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Fprintf(stdout, "re-sealing under key %d (keys in the ring: %v)\n", sealer.Current(), sealer.KeyIDs())
	err = service.RotateKeys(ctx, db, sealer, func(table, column string, seen, changed int) {
		fmt.Fprintf(stdout, "  %s.%s: %d looked at, %d re-sealed or re-hashed\n", table, column, seen, changed)
	})
	if err != nil {
		return err
	}
	n, err := app.Files(cfg, db, sealer).Rotate(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "  files: %d re-sealed\n", n)
	if err := service.RebuildHealthMarks(ctx, db, sealer); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "  health marks: rebuilt under the current hash key")
	fmt.Fprintln(stdout, "done: every sealed value is under the current key; older keys may leave CARELOOP_DATA_KEYS")
	return nil
}

// importPatients runs the HIS import with a progress bar on stderr and the
// refused rows in FILE.errors.csv.
func importPatients(ctx context.Context, cfg app.Config, path string, stdout, stderr io.Writer) error {
	rows, err := tabular.Open(path)
	if err != nil {
		return err
	}
	defer rows.Close()
	db, err := model.Open(ctx, model.OpenOptions{MySQLDSN: cfg.MySQLDSN, SQLitePath: cfg.SQLitePath(), MaxOpenConns: int(cfg.MySQLMaxConns)})
	if err != nil {
		return err
	}
	defer db.Close()
	if cfg.Sandbox() {
		if err := db.Migrate(ctx); err != nil {
			return err
		}
	}
	sealer, err := cfg.Sealer()
	if err != nil {
		return err
	}
	started := time.Now()
	rep, err := service.NewImporter(db, sealer, nil).ImportFrom(ctx, rows, func(done, total int) {
		const width = 30
		if total <= 0 {
			fmt.Fprintf(stderr, "\r导入中 %d 行", done)
			return
		}
		done = min(done, total) // the total is the file's estimate
		filled := done * width / total
		fmt.Fprintf(stderr, "\r导入中 [%s%s] %3d%% %d/%d", strings.Repeat("#", filled), strings.Repeat("-", width-filled),
			done*100/total, done, total)
	})
	fmt.Fprintln(stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rows: %d, created: %d, updated: %d, unchanged: %d, refused: %d (%.1fs)\n",
		rep.Rows, rep.Created, rep.Updated, rep.Unchanged, len(rep.Errors), time.Since(started).Seconds())
	_ = service.NewAudit(db).Record(ctx, service.Principal{Role: "system"}, service.AuditImport, nil,
		fmt.Sprintf("%s: %d created, %d updated, %d refused", filepath.Base(path), rep.Created, rep.Updated, len(rep.Errors)))
	if len(rep.Errors) == 0 {
		return nil
	}
	reportPath := path + ".errors.csv"
	f, err := os.Create(reportPath)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := service.WriteImportErrors(f, rep.Errors); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "refused rows are listed in %s\n", reportPath)
	return nil
}

// healthcheck asks the local server for /healthz; the image has no shell or
// curl, so the binary checks itself.
func healthcheck(ctx context.Context, addr string) error {
	if addr == "" {
		addr = ":8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz answered %d", res.StatusCode)
	}
	return nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "warn":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		l = slog.LevelInfo
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
