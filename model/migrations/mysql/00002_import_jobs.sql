-- HIS exports uploaded in the console are imported as background jobs.

-- +goose Up
CREATE TABLE IF NOT EXISTS `import_jobs` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `staff_id` bigint(20) unsigned DEFAULT NULL,
  `file_name` varchar(255) DEFAULT NULL,
  `file_key` varchar(128) DEFAULT NULL,
  `status` varchar(16) DEFAULT NULL,
  `total` bigint(20) DEFAULT NULL,
  `done` bigint(20) DEFAULT NULL,
  `created` bigint(20) DEFAULT NULL,
  `updated` bigint(20) DEFAULT NULL,
  `unchanged` bigint(20) DEFAULT NULL,
  `rejected` bigint(20) DEFAULT NULL,
  `errors_key` varchar(128) DEFAULT NULL,
  `last_error` varchar(512) DEFAULT NULL,
  `attempts` bigint(20) DEFAULT NULL,
  `claim_token` varchar(32) DEFAULT NULL,
  `lease_until` datetime(3) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  `finished_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_import_jobs_staff_id` (`staff_id`),
  KEY `idx_import_jobs_status` (`status`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE IF EXISTS `import_jobs`;
