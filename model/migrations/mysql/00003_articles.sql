-- Self-media: articles, their publishing to the official account, their images and WeChat's copies, reads and shares.

-- +goose Up
CREATE TABLE IF NOT EXISTS `articles` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `title` varchar(64) DEFAULT NULL,
  `author` varchar(32) DEFAULT NULL,
  `digest` varchar(512) DEFAULT NULL,
  `content` mediumtext DEFAULT NULL,
  `cover_file_id` bigint(20) unsigned DEFAULT NULL,
  `category` varchar(16) DEFAULT NULL,
  `package_id` bigint(20) unsigned DEFAULT NULL,
  `status` varchar(16) DEFAULT NULL,
  `version` bigint(20) DEFAULT NULL,
  `published_version` bigint(20) DEFAULT NULL,
  `article_url` varchar(512) DEFAULT NULL,
  `fail_reason` varchar(512) DEFAULT NULL,
  `published_at` datetime(3) DEFAULT NULL,
  `staff_id` bigint(20) unsigned DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  `read_count` bigint(20) DEFAULT NULL,
  `reader_count` bigint(20) DEFAULT NULL,
  `share_count` bigint(20) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_article_list` (`status`,`category`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS `article_publications` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `article_id` bigint(20) unsigned DEFAULT NULL,
  `version` bigint(20) DEFAULT NULL,
  `status` varchar(16) DEFAULT NULL,
  `media_id` varchar(128) DEFAULT NULL,
  `publish_id` varchar(64) DEFAULT NULL,
  `msg_data_id` varchar(64) DEFAULT NULL,
  `wx_article_id` varchar(128) DEFAULT NULL,
  `article_url` varchar(512) DEFAULT NULL,
  `fail_idx` varchar(64) DEFAULT NULL,
  `fail_reason` varchar(512) DEFAULT NULL,
  `attempts` bigint(20) DEFAULT NULL,
  `claim_token` varchar(32) DEFAULT NULL,
  `lease_until` datetime(3) DEFAULT NULL,
  `staff_id` bigint(20) unsigned DEFAULT NULL,
  `submitted_at` datetime(3) DEFAULT NULL,
  `polled_at` datetime(3) DEFAULT NULL,
  `finished_at` datetime(3) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_article_publications_article_id` (`article_id`),
  KEY `idx_publication_status` (`status`,`polled_at`),
  KEY `idx_article_publications_publish_id` (`publish_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS `media_files` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `key` varchar(64) DEFAULT NULL,
  `mime` varchar(32) DEFAULT NULL,
  `size` bigint(20) DEFAULT NULL,
  `width` bigint(20) DEFAULT NULL,
  `height` bigint(20) DEFAULT NULL,
  `staff_id` bigint(20) unsigned DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_media_files_key` (`key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS `wx_images` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `file_id` bigint(20) unsigned DEFAULT NULL,
  `kind` varchar(8) DEFAULT NULL,
  `url` varchar(512) DEFAULT NULL,
  `media_id` varchar(128) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_wx_image` (`file_id`,`kind`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS `article_reads` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `article_id` bigint(20) unsigned DEFAULT NULL,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `count` bigint(20) DEFAULT NULL,
  `first_at` datetime(3) DEFAULT NULL,
  `last_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_article_reader` (`article_id`,`patient_id`),
  KEY `idx_article_reads_patient_id` (`patient_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS `article_shares` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `article_id` bigint(20) unsigned DEFAULT NULL,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `scene` varchar(32) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_article_shares_article_id` (`article_id`),
  KEY `idx_article_shares_patient_id` (`patient_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE IF EXISTS `article_shares`;
DROP TABLE IF EXISTS `article_reads`;
DROP TABLE IF EXISTS `wx_images`;
DROP TABLE IF EXISTS `media_files`;
DROP TABLE IF EXISTS `article_publications`;
DROP TABLE IF EXISTS `articles`;
