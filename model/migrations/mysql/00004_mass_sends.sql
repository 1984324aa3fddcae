-- Mass sends (群发), their batches, followers' monthly mass-message counts, results that came before their batch knew them, and articles' WeChat drafts for previews and mass sends.

-- +goose Up
CREATE TABLE IF NOT EXISTS `mass_sends` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `article_id` bigint(20) unsigned DEFAULT NULL,
  `text` text DEFAULT NULL,
  `target_kind` varchar(16) DEFAULT NULL,
  `tag_id` bigint(20) unsigned DEFAULT NULL,
  `patient_ids` mediumtext DEFAULT NULL,
  `status` varchar(16) DEFAULT NULL,
  `total` bigint(20) DEFAULT NULL,
  `skipped_monthly` bigint(20) DEFAULT NULL,
  `skipped_not_follow` bigint(20) DEFAULT NULL,
  `filtered` bigint(20) DEFAULT NULL,
  `sent` bigint(20) DEFAULT NULL,
  `errors` bigint(20) DEFAULT NULL,
  `batches` bigint(20) DEFAULT NULL,
  `batches_done` bigint(20) DEFAULT NULL,
  `last_error` varchar(512) DEFAULT NULL,
  `claim_token` varchar(32) DEFAULT NULL,
  `lease_until` datetime(3) DEFAULT NULL,
  `staff_id` bigint(20) unsigned DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  `finished_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_mass_sends_status` (`status`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS `mass_batches` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `mass_send_id` bigint(20) unsigned DEFAULT NULL,
  `seq` bigint(20) DEFAULT NULL,
  `to_all` tinyint(1) DEFAULT NULL,
  `open_ids` mediumtext DEFAULT NULL,
  `count` bigint(20) DEFAULT NULL,
  `client_msg_id` varchar(64) DEFAULT NULL,
  `status` varchar(16) DEFAULT NULL,
  `msg_id` varchar(32) DEFAULT NULL,
  `wx_status` varchar(64) DEFAULT NULL,
  `total` bigint(20) DEFAULT NULL,
  `filtered` bigint(20) DEFAULT NULL,
  `sent` bigint(20) DEFAULT NULL,
  `errors` bigint(20) DEFAULT NULL,
  `attempts` bigint(20) DEFAULT NULL,
  `last_error` varchar(512) DEFAULT NULL,
  `sent_at` datetime(3) DEFAULT NULL,
  `polled_at` datetime(3) DEFAULT NULL,
  `finished_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_mass_batches_client_msg_id` (`client_msg_id`),
  KEY `idx_mass_batches_mass_send_id` (`mass_send_id`),
  KEY `idx_mass_batches_status` (`status`),
  KEY `idx_mass_batches_msg_id` (`msg_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS `mass_receipts` (
  `open_id` varchar(64) NOT NULL,
  `month` varchar(7) NOT NULL,
  `count` bigint(20) DEFAULT NULL,
  PRIMARY KEY (`open_id`,`month`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS `wx_drafts` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `article_id` bigint(20) unsigned DEFAULT NULL,
  `version` bigint(20) DEFAULT NULL,
  `media_id` varchar(128) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_wx_draft` (`article_id`,`version`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS `mass_job_results` (
  `msg_id` varchar(32) NOT NULL,
  `status` varchar(64) DEFAULT NULL,
  `total` bigint(20) DEFAULT NULL,
  `filtered` bigint(20) DEFAULT NULL,
  `sent` bigint(20) DEFAULT NULL,
  `errors` bigint(20) DEFAULT NULL,
  `received_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`msg_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE IF EXISTS `mass_job_results`;
DROP TABLE IF EXISTS `wx_drafts`;
DROP TABLE IF EXISTS `mass_receipts`;
DROP TABLE IF EXISTS `mass_batches`;
DROP TABLE IF EXISTS `mass_sends`;
