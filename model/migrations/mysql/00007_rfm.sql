-- RFM scoring runs (snapshots) and every patient's scores and value tier per run.

-- +goose Up
CREATE TABLE IF NOT EXISTS `rfm_runs` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `status` varchar(16) DEFAULT NULL,
  `thresholds` text DEFAULT NULL,
  `tiers` text DEFAULT NULL,
  `migration` text DEFAULT NULL,
  `prev_run_id` bigint(20) unsigned DEFAULT NULL,
  `patients` bigint(20) DEFAULT NULL,
  `quintiles` tinyint(1) DEFAULT NULL,
  `as_of` datetime(3) DEFAULT NULL,
  `last_error` varchar(512) DEFAULT NULL,
  `claim_token` varchar(32) DEFAULT NULL,
  `lease_until` datetime(3) DEFAULT NULL,
  `staff_id` bigint(20) unsigned DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `finished_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_rfm_runs_status` (`status`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
CREATE TABLE IF NOT EXISTS `rfm_scores` (
  `run_id` bigint(20) unsigned NOT NULL,
  `patient_id` bigint(20) unsigned NOT NULL,
  `r` bigint(20) DEFAULT NULL,
  `f` bigint(20) DEFAULT NULL,
  `m` bigint(20) DEFAULT NULL,
  `r_score` tinyint(4) DEFAULT NULL,
  `f_score` tinyint(4) DEFAULT NULL,
  `m_score` tinyint(4) DEFAULT NULL,
  `tier` varchar(8) DEFAULT NULL,
  PRIMARY KEY (`run_id`,`patient_id`),
  KEY `idx_rfm_scores_patient_id` (`patient_id`),
  KEY `idx_rfm_scores_tier` (`tier`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- +goose Down
DROP TABLE IF EXISTS `rfm_scores`;
DROP TABLE IF EXISTS `rfm_runs`;
