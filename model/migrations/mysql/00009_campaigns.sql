-- Campaigns (a segment, a message, a coupon, a goal) and their recipients (queued or skipped with the reason,
-- their notification, coupon and attributed conversion).

-- +goose Up
CREATE TABLE IF NOT EXISTS `campaigns` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `name` varchar(64) DEFAULT NULL,
  `segment_id` bigint(20) unsigned DEFAULT NULL,
  `channel` varchar(16) DEFAULT NULL,
  `template_id` varchar(64) DEFAULT NULL,
  `page` varchar(255) DEFAULT NULL,
  `message` text DEFAULT NULL,
  `coupon_reward_id` bigint(20) unsigned DEFAULT NULL,
  `goal_kind` varchar(16) DEFAULT NULL,
  `goal_package_id` bigint(20) unsigned DEFAULT NULL,
  `goal_days` bigint(20) DEFAULT NULL,
  `start_at` datetime(3) DEFAULT NULL,
  `status` varchar(16) DEFAULT NULL,
  `paused_from` varchar(16) DEFAULT NULL,
  `prepared_through` bigint(20) unsigned DEFAULT NULL,
  `prepared` bigint(20) DEFAULT NULL,
  `mass_send_ids` varchar(255) DEFAULT NULL,
  `conversions_at` datetime(3) DEFAULT NULL,
  `last_error` varchar(512) DEFAULT NULL,
  `claim_token` varchar(32) DEFAULT NULL,
  `lease_until` datetime(3) DEFAULT NULL,
  `staff_id` bigint(20) unsigned DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  `started_at` datetime(3) DEFAULT NULL,
  `finished_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_campaigns_segment_id` (`segment_id`),
  KEY `idx_campaigns_status` (`status`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS `campaign_recipients` (
  `campaign_id` bigint(20) unsigned NOT NULL,
  `patient_id` bigint(20) unsigned NOT NULL,
  `variant` varchar(1) DEFAULT NULL,
  `skip` varchar(16) DEFAULT NULL,
  `notification_id` bigint(20) unsigned DEFAULT NULL,
  `coupon_id` bigint(20) unsigned DEFAULT NULL,
  `opened_at` datetime(3) DEFAULT NULL,
  `converted_at` datetime(3) DEFAULT NULL,
  `booking_id` bigint(20) unsigned DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`campaign_id`,`patient_id`),
  KEY `idx_recipient_patient` (`patient_id`,`created_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE IF EXISTS `campaign_recipients`;
DROP TABLE IF EXISTS `campaigns`;
