-- RFM scoring runs (snapshots) and every patient's scores and value tier per run.

-- +goose Up
CREATE TABLE IF NOT EXISTS `rfm_runs` (`id` integer PRIMARY KEY AUTOINCREMENT,`status` text,`thresholds` text,`tiers` text,`migration` text,`prev_run_id` integer,`patients` integer,`quintiles` numeric,`as_of` datetime,`last_error` text,`claim_token` text,`lease_until` datetime,`staff_id` integer,`created_at` datetime,`finished_at` datetime);
CREATE INDEX IF NOT EXISTS `idx_rfm_runs_status` ON `rfm_runs`(`status`);
CREATE TABLE IF NOT EXISTS `rfm_scores` (`run_id` integer,`patient_id` integer,`r` integer,`f` integer,`m` integer,`r_score` integer,`f_score` integer,`m_score` integer,`tier` text,PRIMARY KEY (`run_id`,`patient_id`));
CREATE INDEX IF NOT EXISTS `idx_rfm_scores_patient_id` ON `rfm_scores`(`patient_id`);
CREATE INDEX IF NOT EXISTS `idx_rfm_scores_tier` ON `rfm_scores`(`tier`);

-- +goose Down
DROP TABLE IF EXISTS `rfm_scores`;
DROP TABLE IF EXISTS `rfm_runs`;
