package model

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/glebarez/sqlite"
	gomysql "github.com/go-sql-driver/mysql"
	"gorm.io/driver/mysql"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// DB is careloop's handle on its relational store: embedded SQLite or MySQL.
// Services reach the connection through Conn so that a transaction begun with
// InTx is used by every query below it.
type DB struct {
	gorm    *gorm.DB
	dialect string
}

// Dialect names the backing database: "sqlite" or "mysql".
func (d *DB) Dialect() string { return d.dialect }

// Gorm returns the root handle, outside any transaction. Prefer Conn.
func (d *DB) Gorm() *gorm.DB { return d.gorm }

// OpenOptions says which database to open.
type OpenOptions struct {
	// MySQLDSN selects MySQL when set; otherwise SQLite at SQLitePath.
	MySQLDSN   string
	SQLitePath string
	// MaxOpenConns bounds the MySQL pool (default 50).
	MaxOpenConns int
}

// Open connects to the database named by opts and checks that it answers.
func Open(ctx context.Context, opts OpenOptions) (*DB, error) {
	cfg := &gorm.Config{
		TranslateError:         true,
		Logger:                 logger.Discard,
		SkipDefaultTransaction: true,
		NowFunc:                func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) },
	}
	var (
		g       *gorm.DB
		err     error
		dialect string
	)
	if opts.MySQLDSN != "" {
		dsn, derr := normalizeMySQLDSN(opts.MySQLDSN)
		if derr != nil {
			return nil, derr
		}
		dialect = "mysql"
		g, err = gorm.Open(mysql.Open(dsn), cfg)
		if err != nil {
			return nil, fmt.Errorf("open mysql: %w", err)
		}
		sqlDB, _ := g.DB()
		n := opts.MaxOpenConns
		if n <= 0 {
			n = 50
		}
		sqlDB.SetMaxOpenConns(n)
		sqlDB.SetMaxIdleConns(n)
		sqlDB.SetConnMaxLifetime(30 * time.Minute)
	} else {
		if opts.SQLitePath == "" {
			return nil, errors.New("open sqlite: no path")
		}
		if err := os.MkdirAll(filepath.Dir(opts.SQLitePath), 0o750); err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		dialect = "sqlite"
		dsn := "file:" + opts.SQLitePath + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
		g, err = gorm.Open(sqlite.Open(dsn), cfg)
		if err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		sqlDB, _ := g.DB()
		// One writer at a time is SQLite's nature; one connection makes that a
		// queue instead of SQLITE_BUSY errors. Nothing inside a transaction may
		// wait for a second connection, so this cannot deadlock.
		sqlDB.SetMaxOpenConns(1)
	}
	d := &DB{gorm: g, dialect: dialect}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.Ping(pctx); err != nil {
		d.Close()
		return nil, fmt.Errorf("ping %s: %w", dialect, err)
	}
	return d, nil
}

// normalizeMySQLDSN makes sure times round-trip as UTC and text is utf8mb4.
func normalizeMySQLDSN(dsn string) (string, error) {
	c, err := gomysql.ParseDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("parse CARELOOP_MYSQL_DSN: %w", err)
	}
	c.ParseTime = true
	c.Loc = time.UTC
	// Interpolate arguments client-side (safe with utf8mb4): one round trip
	// per query instead of prepare, execute and close.
	c.InterpolateParams = true
	// Times go out at the columns' precision (datetime(3)): an interpolated
	// literal with more fractional digits makes MariaDB compare without the
	// index (a range on due_at, updated_at, lease_until scanned instead).
	if err := c.Apply(gomysql.TimeTruncate(time.Millisecond)); err != nil {
		return "", fmt.Errorf("parse CARELOOP_MYSQL_DSN: %w", err)
	}
	if c.Collation == "" {
		c.Collation = "utf8mb4_unicode_ci"
	}
	if c.Params == nil {
		c.Params = map[string]string{}
	}
	if _, ok := c.Params["time_zone"]; !ok {
		c.Params["time_zone"] = "'+00:00'"
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	return c.FormatDSN(), nil
}

// Ping checks that the database answers.
func (d *DB) Ping(ctx context.Context) error {
	sqlDB, err := d.gorm.DB()
	if err != nil {
		return err
	}
	return sqlDB.PingContext(ctx)
}

// Close releases the pool.
func (d *DB) Close() error {
	sqlDB, err := d.gorm.DB()
	if err != nil {
		return err
	}
	return sqlDB.Close()
}

type txKey struct{}

// Conn returns the transaction carried by ctx, or the root handle, bound to ctx.
func (d *DB) Conn(ctx context.Context) *gorm.DB {
	if tx, ok := ctx.Value(txKey{}).(*gorm.DB); ok {
		return tx.WithContext(ctx)
	}
	return d.gorm.WithContext(ctx)
}

// InTx runs fn in a transaction; queries made through Conn(ctx) inside fn join
// it. A nested InTx joins the outer transaction. When MySQL picks the
// transaction as a deadlock victim, InTx runs fn again (up to three times):
// fn must therefore touch nothing but the database, which is the rule anyway
// (nothing calls WeChat inside a transaction).
func (d *DB) InTx(ctx context.Context, fn func(ctx context.Context) error) error {
	if _, ok := ctx.Value(txKey{}).(*gorm.DB); ok {
		return fn(ctx)
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		hooks := &commitHooks{}
		err = d.gorm.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			return fn(context.WithValue(context.WithValue(ctx, txKey{}, tx), hooksKey{}, hooks))
		})
		if err == nil {
			hooks.run()
		}
		if !isDeadlock(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Duration(attempt+1) * 5 * time.Millisecond):
		}
	}
	return err
}

type hooksKey struct{}

// commitHooks are what a transaction runs once it has committed, each
// keyed hook once however often it was asked for.
type commitHooks struct {
	mu   sync.Mutex
	fns  []func()
	keys map[string]bool
}

func (h *commitHooks) add(key string, fn func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if key != "" {
		if h.keys[key] {
			return
		}
		if h.keys == nil {
			h.keys = map[string]bool{}
		}
		h.keys[key] = true
	}
	h.fns = append(h.fns, fn)
}

func (h *commitHooks) run() {
	h.mu.Lock()
	fns := h.fns
	h.fns, h.keys = nil, nil
	h.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// AfterCommit runs fn once the transaction carried by ctx has committed (not
// at all when it rolls back), or at once outside a transaction. A cache
// dropped after commit cannot be filled again from the state the
// transaction replaced. A non-empty key runs fn once per transaction
// however many times it is asked for under that key.
func AfterCommit(ctx context.Context, key string, fn func()) {
	if h, ok := ctx.Value(hooksKey{}).(*commitHooks); ok {
		h.add(key, fn)
		return
	}
	fn()
}

// OnChange calls fn after any update or delete that changed rows of one of
// the tables, once the change is committed (once per transaction, however
// many statements changed them): whichever code path wrote them (the
// registry's merge and erase included), a cache of those rows hears of it.
// Raw SQL (Exec) is not seen.
func (d *DB) OnChange(tables []string, fn func()) error {
	watched := make(map[string]bool, len(tables))
	for _, t := range tables {
		watched[t] = true
	}
	name := fmt.Sprintf("careloop:onchange:%p", &watched)
	hook := func(tx *gorm.DB) {
		if tx.Error != nil || tx.RowsAffected == 0 || !watched[tx.Statement.Table] {
			return
		}
		ctx := tx.Statement.Context
		if ctx == nil {
			ctx = context.Background()
		}
		AfterCommit(ctx, name, fn)
	}
	if err := d.gorm.Callback().Update().After("gorm:update").Register(name, hook); err != nil {
		return err
	}
	return d.gorm.Callback().Delete().After("gorm:delete").Register(name, hook)
}

// isDeadlock reports MySQL's "deadlock found" (1213), after which the whole
// transaction may simply run again.
func isDeadlock(err error) bool {
	var me *gomysql.MySQLError
	return errors.As(err, &me) && me.Number == 1213
}

// IsDuplicate reports whether err is a unique-key violation.
func IsDuplicate(err error) bool {
	if errors.Is(err, gorm.ErrDuplicatedKey) {
		return true
	}
	var me *gomysql.MySQLError
	if errors.As(err, &me) && me.Number == 1062 {
		return true
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// IsUnavailable reports a database that refused or lost the connection
// (too many connections, server gone): the client should retry later.
func IsUnavailable(err error) bool {
	var me *gomysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1040, 1203, 2002, 2003, 2006, 2013: // too many connections, gone away, lost
			return true
		}
	}
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, gomysql.ErrInvalidConn)
}

// NotFound turns gorm.ErrRecordNotFound into ErrNotFound and leaves other
// errors as they are.
func NotFound(err error) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return ErrNotFound
	}
	return err
}

// TableOf names the table of model m.
func (d *DB) TableOf(m any) string {
	st := &gorm.Statement{DB: d.gorm}
	if err := st.Parse(m); err != nil {
		return fmt.Sprintf("%T", m)
	}
	return st.Schema.Table
}

// Count counts the rows q selects.
func Count(q *gorm.DB) (int64, error) {
	var n int64
	err := q.Count(&n).Error
	return n, err
}

// Exists reports whether q selects any row.
func Exists(q *gorm.DB) (bool, error) {
	n, err := Count(q)
	return n > 0, err
}

// MustExist answers notFound when q selects no row, and q's error when it
// fails.
func MustExist(q *gorm.DB, notFound error) error {
	ok, err := Exists(q)
	switch {
	case err != nil:
		return err
	case !ok:
		return notFound
	}
	return nil
}
