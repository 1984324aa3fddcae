-- Patient visit summaries (what segments count on) and the index on bookings.updated_at that keeps them.

-- +goose Up
CREATE TABLE IF NOT EXISTS `patient_visits` (`patient_id` integer,`last_completed` text,`completed` integer,`no_shows` integer,`upcoming_until` text,`updated_at` datetime,PRIMARY KEY (`patient_id`));
CREATE INDEX IF NOT EXISTS `idx_patient_visits_completed` ON `patient_visits`(`completed`);
CREATE INDEX IF NOT EXISTS `idx_patient_visits_last_completed` ON `patient_visits`(`last_completed`);
CREATE INDEX IF NOT EXISTS `idx_patient_visits_no_shows` ON `patient_visits`(`no_shows`);
CREATE INDEX IF NOT EXISTS `idx_patient_visits_upcoming_until` ON `patient_visits`(`upcoming_until`);
CREATE INDEX IF NOT EXISTS `idx_bookings_updated_at` ON `bookings`(`updated_at`);

-- +goose Down
DROP TABLE IF EXISTS `patient_visits`;
DROP INDEX IF EXISTS `idx_bookings_updated_at`;
