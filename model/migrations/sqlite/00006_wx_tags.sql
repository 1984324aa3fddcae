-- careloop tags mirrored as WeChat user tags, and the openids WeChat holds under them.

-- +goose Up
CREATE TABLE IF NOT EXISTS `wx_tags` (`tag_id` integer PRIMARY KEY AUTOINCREMENT,`wx_tag_id` integer,`name` text,`members` integer,`pending` integer,`over_limit` integer,`synced_at` datetime,`last_error` text,`created_at` datetime,`updated_at` datetime);
CREATE TABLE IF NOT EXISTS `wx_tag_members` (`tag_id` integer,`open_id` text,PRIMARY KEY (`tag_id`,`open_id`));
CREATE INDEX IF NOT EXISTS `idx_wx_tag_members_open_id` ON `wx_tag_members`(`open_id`);

-- +goose Down
DROP TABLE IF EXISTS `wx_tag_members`;
DROP TABLE IF EXISTS `wx_tags`;
