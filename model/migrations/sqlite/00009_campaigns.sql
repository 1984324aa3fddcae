-- Campaigns (a segment, a message, a coupon, a goal) and their recipients (queued or skipped with the reason,
-- their notification, coupon and attributed conversion).

-- +goose Up
CREATE TABLE IF NOT EXISTS `campaigns` (`id` integer PRIMARY KEY AUTOINCREMENT,`name` text,`segment_id` integer,`channel` text,`template_id` text,`page` text,`message` text,`coupon_reward_id` integer,`goal_kind` text,`goal_package_id` integer,`goal_days` integer,`start_at` datetime,`status` text,`paused_from` text,`prepared_through` integer,`prepared` integer,`mass_send_ids` text,`conversions_at` datetime,`last_error` text,`claim_token` text,`lease_until` datetime,`staff_id` integer,`created_at` datetime,`updated_at` datetime,`started_at` datetime,`finished_at` datetime);
CREATE INDEX IF NOT EXISTS `idx_campaigns_segment_id` ON `campaigns`(`segment_id`);
CREATE INDEX IF NOT EXISTS `idx_campaigns_status` ON `campaigns`(`status`);
CREATE TABLE IF NOT EXISTS `campaign_recipients` (`campaign_id` integer,`patient_id` integer,`variant` text,`skip` text,`notification_id` integer,`coupon_id` integer,`opened_at` datetime,`converted_at` datetime,`booking_id` integer,`created_at` datetime,PRIMARY KEY (`campaign_id`,`patient_id`));
CREATE INDEX IF NOT EXISTS `idx_recipient_patient` ON `campaign_recipients`(`patient_id`,`created_at`);

-- +goose Down
DROP TABLE IF EXISTS `campaign_recipients`;
DROP TABLE IF EXISTS `campaigns`;
