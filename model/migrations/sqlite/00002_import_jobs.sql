-- HIS exports uploaded in the console are imported as background jobs.

-- +goose Up
CREATE TABLE IF NOT EXISTS `import_jobs` (`id` integer PRIMARY KEY AUTOINCREMENT,`staff_id` integer,`file_name` text,`file_key` text,`status` text,`total` integer,`done` integer,`created` integer,`updated` integer,`unchanged` integer,`rejected` integer,`errors_key` text,`last_error` text,`attempts` integer,`claim_token` text,`lease_until` datetime,`created_at` datetime,`updated_at` datetime,`finished_at` datetime);
CREATE INDEX IF NOT EXISTS `idx_import_jobs_status` ON `import_jobs`(`status`);
CREATE INDEX IF NOT EXISTS `idx_import_jobs_staff_id` ON `import_jobs`(`staff_id`);

-- +goose Down
DROP TABLE IF EXISTS `import_jobs`;
