-- Patient visit summaries (what segments count on) and the index on bookings.updated_at that keeps them.

-- +goose Up
CREATE TABLE IF NOT EXISTS `patient_visits` (
  `patient_id` bigint(20) unsigned NOT NULL,
  `last_completed` varchar(10) DEFAULT NULL,
  `completed` bigint(20) DEFAULT NULL,
  `no_shows` bigint(20) DEFAULT NULL,
  `upcoming_until` varchar(10) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`patient_id`),
  KEY `idx_patient_visits_last_completed` (`last_completed`),
  KEY `idx_patient_visits_completed` (`completed`),
  KEY `idx_patient_visits_no_shows` (`no_shows`),
  KEY `idx_patient_visits_upcoming_until` (`upcoming_until`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
-- +goose StatementBegin
SET @have := (SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'bookings' AND index_name = 'idx_bookings_updated_at');
-- +goose StatementEnd
-- +goose StatementBegin
SET @ddl := IF(@have = 0, 'CREATE INDEX `idx_bookings_updated_at` ON `bookings` (`updated_at`)', 'SELECT 1');
-- +goose StatementEnd
-- +goose StatementBegin
PREPARE stmt FROM @ddl;
-- +goose StatementEnd
-- +goose StatementBegin
EXECUTE stmt;
-- +goose StatementEnd
-- +goose StatementBegin
DEALLOCATE PREPARE stmt;
-- +goose StatementEnd

-- +goose Down
DROP TABLE IF EXISTS `patient_visits`;
DROP INDEX `idx_bookings_updated_at` ON `bookings`;
