// Package testenv gives tests real backing services: a fresh SQLite file or
// a fresh MariaDB/MySQL database per test (dropped afterwards), and Redis
// under a per-test key prefix. Where MySQL or Redis is missing, tests skip
// with a one-line reason, except under CI=true, where they fail.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the server-level connection that creates test databases
	"github.com/redis/go-redis/v9"

	"careloop/coord"
	"careloop/model"
)

// MySQLServerDSN is the server to create test databases on:
// CARELOOP_TEST_MYSQL_DSN, default root@127.0.0.1:3306 with no password.
func MySQLServerDSN() string {
	if v := os.Getenv("CARELOOP_TEST_MYSQL_DSN"); v != "" {
		return v
	}
	return "root@tcp(127.0.0.1:3306)/"
}

// RedisAddr is the Redis for tests: CARELOOP_TEST_REDIS_ADDR, default 127.0.0.1:6379.
func RedisAddr() string {
	if v := os.Getenv("CARELOOP_TEST_REDIS_ADDR"); v != "" {
		return v
	}
	return "127.0.0.1:6379"
}

// InCI reports whether CI=true, where missing services fail tests.
func InCI() bool { return os.Getenv("CI") == "true" }

func unavailable(t testing.TB, what string, err error) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s is required under CI=true but unavailable: %v", what, err)
	}
	t.Skipf("skipping: %s unavailable (%v)", what, err)
}

// Suffix returns a short random name part.
func Suffix() string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Backends lists the databases a store test runs on: sqlite always, and
// mysql (MariaDB here).
func Backends() []string { return []string{"sqlite", "mysql"} }

// ForEachDB runs fn as a subtest on a fresh, migrated database of every
// backend.
func ForEachDB(t *testing.T, fn func(t *testing.T, db *model.DB)) {
	for _, b := range Backends() {
		t.Run(b, func(t *testing.T) {
			fn(t, OpenDB(t, b))
		})
	}
}

// OpenDB opens a fresh, migrated database of backend ("sqlite" or "mysql"),
// closed and dropped when t ends.
func OpenDB(t testing.TB, backend string) *model.DB {
	t.Helper()
	opts := model.OpenOptions{}
	switch backend {
	case "sqlite":
		opts.SQLitePath = t.TempDir() + "/careloop.db"
	case "mysql":
		opts.MySQLDSN = NewMySQLDatabase(t)
		opts.MaxOpenConns = 16 // test packages share one server
	default:
		t.Fatalf("unknown backend %q", backend)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := model.Open(ctx, opts)
	if err != nil {
		t.Fatalf("open %s: %v", backend, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatalf("migrate %s: %v", backend, err)
	}
	return db
}

// NewMySQLDatabase creates an empty database on the test server and returns
// its DSN; it is dropped when t ends.
func NewMySQLDatabase(t testing.TB) string {
	t.Helper()
	server := MySQLServerDSN()
	conn, err := sql.Open("mysql", server+"?timeout=3s")
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = conn.PingContext(ctx)
		cancel()
	}
	if err != nil {
		unavailable(t, "MySQL at "+server, err)
	}
	name := "careloop_test_" + Suffix()
	if _, err := conn.Exec("CREATE DATABASE " + name + " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		_, _ = conn.Exec("DROP DATABASE IF EXISTS " + name)
		_ = conn.Close()
	})
	base := strings.TrimSuffix(server, "/")
	if i := strings.LastIndex(base, ")/"); i >= 0 {
		base = base[:i+1]
	}
	return fmt.Sprintf("%s/%s", base, name)
}

// Redis returns a coord store on the test Redis under a fresh key prefix,
// whose keys are deleted when t ends.
func Redis(t testing.TB) *coord.Redis {
	t.Helper()
	prefix := "careloop-test-" + Suffix() + ":"
	r, _ := coord.NewRedis(RedisAddr(), prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := r.Ping(ctx); err != nil {
		_ = r.Close()
		unavailable(t, "Redis at "+RedisAddr(), err)
	}
	t.Cleanup(func() {
		DeletePrefix(r.Client(), prefix)
		_ = r.Close()
	})
	return r
}

// DeletePrefix removes every key under prefix.
func DeletePrefix(c *redis.Client, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			c.Del(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		c.Del(ctx, batch...)
	}
}

// StartRedis runs a private redis-server on port that the test may stop
// (kill the returned process) and start again; it is killed when t ends.
func StartRedis(t testing.TB, port int) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		unavailable(t, "redis-server", err)
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	for i := 0; i < 250; i++ {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			return cmd
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("redis-server did not start")
	return nil
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of asking.
func FreePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
