-- Mass sends (群发), their batches, followers' monthly mass-message counts, results that came before their batch knew them, and articles' WeChat drafts for previews and mass sends.

-- +goose Up
CREATE TABLE IF NOT EXISTS `mass_sends` (`id` integer PRIMARY KEY AUTOINCREMENT,`article_id` integer,`text` text,`target_kind` text,`tag_id` integer,`patient_ids` mediumtext,`status` text,`total` integer,`skipped_monthly` integer,`skipped_not_follow` integer,`filtered` integer,`sent` integer,`errors` integer,`batches` integer,`batches_done` integer,`last_error` text,`claim_token` text,`lease_until` datetime,`staff_id` integer,`created_at` datetime,`updated_at` datetime,`finished_at` datetime);
CREATE INDEX IF NOT EXISTS `idx_mass_sends_status` ON `mass_sends`(`status`);
CREATE TABLE IF NOT EXISTS `mass_batches` (`id` integer PRIMARY KEY AUTOINCREMENT,`mass_send_id` integer,`seq` integer,`to_all` numeric,`open_ids` mediumtext,`count` integer,`client_msg_id` text,`status` text,`msg_id` text,`wx_status` text,`total` integer,`filtered` integer,`sent` integer,`errors` integer,`attempts` integer,`last_error` text,`sent_at` datetime,`polled_at` datetime,`finished_at` datetime);
CREATE UNIQUE INDEX IF NOT EXISTS `idx_mass_batches_client_msg_id` ON `mass_batches`(`client_msg_id`);
CREATE INDEX IF NOT EXISTS `idx_mass_batches_mass_send_id` ON `mass_batches`(`mass_send_id`);
CREATE INDEX IF NOT EXISTS `idx_mass_batches_msg_id` ON `mass_batches`(`msg_id`);
CREATE INDEX IF NOT EXISTS `idx_mass_batches_status` ON `mass_batches`(`status`);
CREATE TABLE IF NOT EXISTS `mass_receipts` (`open_id` text,`month` text,`count` integer,PRIMARY KEY (`open_id`,`month`));
CREATE TABLE IF NOT EXISTS `wx_drafts` (`id` integer PRIMARY KEY AUTOINCREMENT,`article_id` integer,`version` integer,`media_id` text,`created_at` datetime);
CREATE UNIQUE INDEX IF NOT EXISTS `idx_wx_draft` ON `wx_drafts`(`article_id`,`version`);
CREATE TABLE IF NOT EXISTS `mass_job_results` (`msg_id` text,`status` text,`total` integer,`filtered` integer,`sent` integer,`errors` integer,`received_at` datetime,PRIMARY KEY (`msg_id`));

-- +goose Down
DROP TABLE IF EXISTS `mass_job_results`;
DROP TABLE IF EXISTS `wx_drafts`;
DROP TABLE IF EXISTS `mass_receipts`;
DROP TABLE IF EXISTS `mass_batches`;
DROP TABLE IF EXISTS `mass_sends`;
