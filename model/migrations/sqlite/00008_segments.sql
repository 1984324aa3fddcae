-- Segments (saved filters over patients), computed tags (model and predictive tags, mirrored segments) and
-- health marks (keyed hashes of abnormal report items and archive entries, for care segments).

-- +goose Up
CREATE TABLE IF NOT EXISTS `segments` (`id` integer PRIMARY KEY AUTOINCREMENT,`name` text,`purpose` text,`conditions` text,`tag_id` integer,`staff_id` integer,`created_at` datetime,`updated_at` datetime);
CREATE UNIQUE INDEX IF NOT EXISTS `idx_segments_name` ON `segments`(`name`);
CREATE TABLE IF NOT EXISTS `computed_tags` (`tag_id` integer,`key` text,`rule` text,`members` integer,`computed_at` datetime,`updated_at` datetime,PRIMARY KEY (`tag_id`));
CREATE UNIQUE INDEX IF NOT EXISTS `idx_computed_tags_key` ON `computed_tags`(`key`);
CREATE TABLE IF NOT EXISTS `health_marks` (`id` integer PRIMARY KEY AUTOINCREMENT,`patient_id` integer,`kind` text,`hash` text,`report_id` integer,`date` text);
CREATE INDEX IF NOT EXISTS `idx_health_mark` ON `health_marks`(`kind`,`hash`);
CREATE INDEX IF NOT EXISTS `idx_health_marks_patient_id` ON `health_marks`(`patient_id`);
CREATE INDEX IF NOT EXISTS `idx_health_marks_report_id` ON `health_marks`(`report_id`);

-- +goose Down
DROP TABLE IF EXISTS `health_marks`;
DROP TABLE IF EXISTS `computed_tags`;
DROP TABLE IF EXISTS `segments`;
