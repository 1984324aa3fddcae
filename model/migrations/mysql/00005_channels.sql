-- Channels (渠道) with their QR codes, and the scans of them.

-- +goose Up
CREATE TABLE IF NOT EXISTS `channels` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `name` varchar(64) DEFAULT NULL,
  `purpose` varchar(256) DEFAULT NULL,
  `scene` varchar(64) DEFAULT NULL,
  `temporary` tinyint(1) DEFAULT NULL,
  `ticket` varchar(256) DEFAULT NULL,
  `qr_content` varchar(256) DEFAULT NULL,
  `expires_at` datetime(3) DEFAULT NULL,
  `staff_id` bigint(20) unsigned DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_channels_scene` (`scene`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS `channel_scans` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `channel_id` bigint(20) unsigned DEFAULT NULL,
  `open_id` varchar(64) DEFAULT NULL,
  `new_follower` tinyint(1) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_channel_scans_channel_id` (`channel_id`),
  KEY `idx_channel_scans_open_id` (`open_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE IF EXISTS `channel_scans`;
DROP TABLE IF EXISTS `channels`;
