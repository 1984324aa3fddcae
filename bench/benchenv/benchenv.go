// Package benchenv sets up what the benchmark programs share: a throw-away
// MySQL database and the fully wired careloop serving on loopback.
package benchenv

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strings"
	"time"

	_ "github.com/go-sql-driver/mysql" // the server-level connection that creates the database

	"careloop/app"
)

// Database creates an empty database on the server and returns its DSN
// and a func that drops it.
func Database(server, prefix string) (string, func()) {
	name := fmt.Sprintf("careloop_%s_%d", prefix, time.Now().UnixNano())
	admin, err := sql.Open("mysql", server)
	Must(err)
	_, err = admin.Exec("CREATE DATABASE " + name + " CHARACTER SET utf8mb4")
	Must(err)
	return strings.TrimSuffix(server, "/") + "/" + name, func() {
		_, _ = admin.Exec("DROP DATABASE " + name)
		_ = admin.Close()
	}
}

// Serve wires careloop from env (CARELOOP_* variables; workers off) and
// serves it on a loopback port until ctx ends. It returns the app and its
// base URL.
func Serve(ctx context.Context, env map[string]string) (*app.App, string) {
	env["CARELOOP_SERVE_WORKERS"] = "false"
	cfg, err := app.Load("", func(k string) string { return env[k] })
	Must(err)
	a, err := app.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	Must(err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Must(err)
	go func() { _ = a.Serve(ctx, ln, a.Router) }()
	return a, "http://" + ln.Addr().String()
}

// Must stops the benchmark on an error.
func Must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
