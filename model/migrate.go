package model

import (
	"context"
	"fmt"
)

// AutoMigrate creates or widens the schema to what the models say (GORM's
// AutoMigrate). Versioned migrations (Migrate) are how a database is kept;
// this is used once for an install made before them, and by the test that
// keeps the migrations and the models equal.
func (d *DB) AutoMigrate(ctx context.Context) error {
	g := d.gorm.WithContext(ctx)
	if d.dialect == "mysql" {
		g = g.Set("gorm:table_options", "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci")
	}
	if err := g.AutoMigrate(AllModels()...); err != nil {
		return fmt.Errorf("auto-migrate: %w", err)
	}
	return nil
}
