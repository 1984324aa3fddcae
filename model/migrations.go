package model

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/pressly/goose/v3"
)

// The versioned migrations, one folder per dialect (goose SQL files:
// NNNNN_what.sql with "-- +goose Up" and "-- +goose Down"). A schema change
// is a new file in both folders; TestMigrationsMatchModels keeps them equal
// to the models.
//
//go:embed migrations
var migrationFiles embed.FS

// versionTable records the applied migrations.
const versionTable = "goose_db_version"

func (d *DB) migrations() (*goose.Provider, error) {
	dir, err := fs.Sub(migrationFiles, "migrations/"+d.dialect)
	if err != nil {
		return nil, err
	}
	dialect := goose.DialectSQLite3
	if d.dialect == "mysql" {
		dialect = goose.DialectMySQL
	}
	sqlDB, err := d.gorm.DB()
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(dialect, sqlDB, dir, goose.WithDisableGlobalRegistry(true))
}

// Migrate applies the migrations not yet applied. Instances starting
// together take turns (a MySQL advisory lock held by one connection, freed
// if its process dies); on SQLite one process owns the file. An install
// made before versioned migrations (tables but no version table) is first
// brought to the first migration's schema by AutoMigrate.
func (d *DB) Migrate(ctx context.Context) error {
	unlock, err := d.migrationLock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	m := d.gorm.WithContext(ctx).Migrator()
	if !m.HasTable(versionTable) && m.HasTable(&Patient{}) {
		if err := d.AutoMigrate(ctx); err != nil {
			return fmt.Errorf("bring a pre-migration install to version 1: %w", err)
		}
	}
	p, err := d.migrations()
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// MigrationState is one migration and whether it is applied.
type MigrationState struct {
	Version   int64
	Name      string
	Applied   bool
	AppliedAt time.Time
}

// MigrationStatus lists every migration, oldest first.
func (d *DB) MigrationStatus(ctx context.Context) ([]MigrationState, error) {
	p, err := d.migrations()
	if err != nil {
		return nil, fmt.Errorf("migrations: %w", err)
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration status: %w", err)
	}
	out := make([]MigrationState, 0, len(st))
	for _, s := range st {
		out = append(out, MigrationState{Version: s.Source.Version, Name: s.Source.Path, Applied: s.State == goose.StateApplied, AppliedAt: s.AppliedAt})
	}
	return out, nil
}

// migrationLock takes MySQL's advisory lock for migrating on a connection
// of its own, waiting up to five minutes; unlock frees it.
func (d *DB) migrationLock(ctx context.Context) (unlock func(), err error) {
	if d.dialect != "mysql" {
		return func() {}, nil
	}
	sqlDB, err := d.gorm.DB()
	if err != nil {
		return nil, err
	}
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK('careloop_migrate', 300)").Scan(&got); err != nil {
		conn.Close()
		return nil, fmt.Errorf("migration lock: %w", err)
	}
	if got.Int64 != 1 {
		conn.Close()
		return nil, errors.New("migration lock: another instance has been migrating for five minutes")
	}
	return func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK('careloop_migrate')")
		conn.Close()
	}, nil
}
