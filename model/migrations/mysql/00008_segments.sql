-- Segments (saved filters over patients), computed tags (model and predictive tags, mirrored segments) and
-- health marks (keyed hashes of abnormal report items and archive entries, for care segments).

-- +goose Up
CREATE TABLE IF NOT EXISTS `segments` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `name` varchar(64) DEFAULT NULL,
  `purpose` varchar(16) DEFAULT NULL,
  `conditions` text DEFAULT NULL,
  `tag_id` bigint(20) unsigned DEFAULT NULL,
  `staff_id` bigint(20) unsigned DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_segments_name` (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS `computed_tags` (
  `tag_id` bigint(20) unsigned NOT NULL,
  `key` varchar(64) DEFAULT NULL,
  `rule` varchar(512) DEFAULT NULL,
  `members` bigint(20) DEFAULT NULL,
  `computed_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`tag_id`),
  UNIQUE KEY `idx_computed_tags_key` (`key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS `health_marks` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `kind` varchar(16) DEFAULT NULL,
  `hash` varchar(64) DEFAULT NULL,
  `report_id` bigint(20) unsigned DEFAULT NULL,
  `date` varchar(10) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_health_marks_patient_id` (`patient_id`),
  KEY `idx_health_mark` (`kind`,`hash`),
  KEY `idx_health_marks_report_id` (`report_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE IF EXISTS `health_marks`;
DROP TABLE IF EXISTS `computed_tags`;
DROP TABLE IF EXISTS `segments`;
