-- careloop tags mirrored as WeChat user tags, and the openids WeChat holds under them.

-- +goose Up
CREATE TABLE IF NOT EXISTS `wx_tags` (
  `tag_id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `wx_tag_id` bigint(20) DEFAULT NULL,
  `name` varchar(30) DEFAULT NULL,
  `members` bigint(20) DEFAULT NULL,
  `pending` bigint(20) DEFAULT NULL,
  `over_limit` bigint(20) DEFAULT NULL,
  `synced_at` datetime(3) DEFAULT NULL,
  `last_error` varchar(512) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`tag_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS `wx_tag_members` (
  `tag_id` bigint(20) unsigned NOT NULL,
  `open_id` varchar(64) NOT NULL,
  PRIMARY KEY (`tag_id`,`open_id`),
  KEY `idx_wx_tag_members_open_id` (`open_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE IF EXISTS `wx_tag_members`;
DROP TABLE IF EXISTS `wx_tags`;
