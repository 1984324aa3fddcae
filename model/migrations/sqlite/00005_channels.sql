-- Channels (渠道) with their QR codes, and the scans of them.

-- +goose Up
CREATE TABLE IF NOT EXISTS `channels` (`id` integer PRIMARY KEY AUTOINCREMENT,`name` text,`purpose` text,`scene` text,`temporary` numeric,`ticket` text,`qr_content` text,`expires_at` datetime,`staff_id` integer,`created_at` datetime);
CREATE UNIQUE INDEX IF NOT EXISTS `idx_channels_scene` ON `channels`(`scene`);
CREATE TABLE IF NOT EXISTS `channel_scans` (`id` integer PRIMARY KEY AUTOINCREMENT,`channel_id` integer,`open_id` text,`new_follower` numeric,`created_at` datetime);
CREATE INDEX IF NOT EXISTS `idx_channel_scans_channel_id` ON `channel_scans`(`channel_id`);
CREATE INDEX IF NOT EXISTS `idx_channel_scans_open_id` ON `channel_scans`(`open_id`);

-- +goose Down
DROP TABLE IF EXISTS `channel_scans`;
DROP TABLE IF EXISTS `channels`;
