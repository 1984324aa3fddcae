-- Self-media: articles, their publishing to the official account, their images and WeChat's copies, reads and shares.

-- +goose Up
CREATE TABLE IF NOT EXISTS `articles` (`id` integer PRIMARY KEY AUTOINCREMENT,`title` text,`author` text,`digest` text,`content` mediumtext,`cover_file_id` integer,`category` text,`package_id` integer,`status` text,`version` integer,`published_version` integer,`article_url` text,`fail_reason` text,`published_at` datetime,`staff_id` integer,`created_at` datetime,`updated_at` datetime,`read_count` integer,`reader_count` integer,`share_count` integer);
CREATE INDEX IF NOT EXISTS `idx_article_list` ON `articles`(`status`,`category`);
CREATE TABLE IF NOT EXISTS `article_publications` (`id` integer PRIMARY KEY AUTOINCREMENT,`article_id` integer,`version` integer,`status` text,`media_id` text,`publish_id` text,`msg_data_id` text,`wx_article_id` text,`article_url` text,`fail_idx` text,`fail_reason` text,`attempts` integer,`claim_token` text,`lease_until` datetime,`staff_id` integer,`submitted_at` datetime,`polled_at` datetime,`finished_at` datetime,`created_at` datetime,`updated_at` datetime);
CREATE INDEX IF NOT EXISTS `idx_article_publications_article_id` ON `article_publications`(`article_id`);
CREATE INDEX IF NOT EXISTS `idx_article_publications_publish_id` ON `article_publications`(`publish_id`);
CREATE INDEX IF NOT EXISTS `idx_publication_status` ON `article_publications`(`status`,`polled_at`);
CREATE TABLE IF NOT EXISTS `media_files` (`id` integer PRIMARY KEY AUTOINCREMENT,`key` text,`mime` text,`size` integer,`width` integer,`height` integer,`staff_id` integer,`created_at` datetime);
CREATE UNIQUE INDEX IF NOT EXISTS `idx_media_files_key` ON `media_files`(`key`);
CREATE TABLE IF NOT EXISTS `wx_images` (`id` integer PRIMARY KEY AUTOINCREMENT,`file_id` integer,`kind` text,`url` text,`media_id` text,`created_at` datetime);
CREATE UNIQUE INDEX IF NOT EXISTS `idx_wx_image` ON `wx_images`(`file_id`,`kind`);
CREATE TABLE IF NOT EXISTS `article_reads` (`id` integer PRIMARY KEY AUTOINCREMENT,`article_id` integer,`patient_id` integer,`count` integer,`first_at` datetime,`last_at` datetime);
CREATE UNIQUE INDEX IF NOT EXISTS `idx_article_reader` ON `article_reads`(`article_id`,`patient_id`);
CREATE INDEX IF NOT EXISTS `idx_article_reads_patient_id` ON `article_reads`(`patient_id`);
CREATE TABLE IF NOT EXISTS `article_shares` (`id` integer PRIMARY KEY AUTOINCREMENT,`article_id` integer,`patient_id` integer,`scene` text,`created_at` datetime);
CREATE INDEX IF NOT EXISTS `idx_article_shares_article_id` ON `article_shares`(`article_id`);
CREATE INDEX IF NOT EXISTS `idx_article_shares_patient_id` ON `article_shares`(`patient_id`);

-- +goose Down
DROP TABLE IF EXISTS `article_shares`;
DROP TABLE IF EXISTS `article_reads`;
DROP TABLE IF EXISTS `wx_images`;
DROP TABLE IF EXISTS `media_files`;
DROP TABLE IF EXISTS `article_publications`;
DROP TABLE IF EXISTS `articles`;
