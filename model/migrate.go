package model

import (
	"context"
	"fmt"
)

// Migrate brings the schema up to date with the models.
func (d *DB) Migrate(ctx context.Context) error {
	g := d.gorm.WithContext(ctx)
	if d.dialect == "mysql" {
		g = g.Set("gorm:table_options", "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci")
	}
	if err := g.AutoMigrate(AllModels()...); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}
