-- The schema as of the first versioned migration: what GORM's AutoMigrate
-- made of the models at that time (MySQL, InnoDB, utf8mb4). Later changes are new files.
-- IF NOT EXISTS: an install made before versioned migrations is brought to
-- this schema by AutoMigrate first, and this file then finds it done.

-- +goose Up
CREATE TABLE IF NOT EXISTS `audit_logs` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `staff_id` bigint(20) unsigned DEFAULT NULL,
  `role` varchar(16) DEFAULT NULL,
  `action` varchar(48) DEFAULT NULL,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `detail` varchar(512) DEFAULT NULL,
  `ip` varchar(64) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_audit_logs_staff_id` (`staff_id`),
  KEY `idx_audit_logs_action` (`action`),
  KEY `idx_audit_logs_patient_id` (`patient_id`),
  KEY `idx_audit_logs_created_at` (`created_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `auto_replies` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `keyword` varchar(64) DEFAULT NULL,
  `match` varchar(8) DEFAULT NULL,
  `priority` bigint(20) DEFAULT NULL,
  `reply` text DEFAULT NULL,
  `active` tinyint(1) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `bookings` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `code` varchar(12) DEFAULT NULL,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `family_member_id` bigint(20) unsigned DEFAULT NULL,
  `person_key` varchar(24) DEFAULT NULL,
  `active_day` varchar(10) DEFAULT NULL,
  `package_id` bigint(20) unsigned DEFAULT NULL,
  `slot_id` bigint(20) unsigned DEFAULT NULL,
  `date` varchar(10) DEFAULT NULL,
  `status` varchar(16) DEFAULT NULL,
  `price_fen` bigint(20) DEFAULT NULL,
  `idempotency_key` varchar(64) DEFAULT NULL,
  `checked_in_at` datetime(3) DEFAULT NULL,
  `completed_at` datetime(3) DEFAULT NULL,
  `cancelled_at` datetime(3) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_bookings_code` (`code`),
  UNIQUE KEY `idx_booking_idem` (`patient_id`,`idempotency_key`),
  UNIQUE KEY `idx_booking_person_day` (`person_key`,`active_day`),
  KEY `idx_bookings_patient_id` (`patient_id`),
  KEY `idx_bookings_family_member_id` (`family_member_id`),
  KEY `idx_bookings_package_id` (`package_id`),
  KEY `idx_bookings_slot_id` (`slot_id`),
  KEY `idx_bookings_date` (`date`),
  KEY `idx_bookings_status` (`status`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `canned_replies` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `staff_id` bigint(20) unsigned DEFAULT NULL,
  `title` varchar(64) DEFAULT NULL,
  `content` text DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_canned_replies_staff_id` (`staff_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `chat_messages` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `conversation_id` bigint(20) unsigned DEFAULT NULL,
  `sender` varchar(8) DEFAULT NULL,
  `staff_id` bigint(20) unsigned DEFAULT NULL,
  `kind` varchar(8) DEFAULT NULL,
  `content` text DEFAULT NULL,
  `channel` varchar(4) DEFAULT NULL,
  `client_key` varchar(96) DEFAULT NULL,
  `image_key` varchar(64) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_chat_messages_client_key` (`client_key`),
  KEY `idx_chat_messages_conversation_id` (`conversation_id`),
  KEY `idx_chat_messages_image_key` (`image_key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `chat_uploads` (
  `key` varchar(64) NOT NULL,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `message_id` bigint(20) unsigned DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`key`),
  KEY `idx_chat_uploads_patient_id` (`patient_id`),
  KEY `idx_chat_uploads_created_at` (`created_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `closed_days` (
  `date` varchar(10) NOT NULL,
  `reason` varchar(64) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`date`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `complaint_steps` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `complaint_id` bigint(20) unsigned DEFAULT NULL,
  `from` varchar(16) DEFAULT NULL,
  `to` varchar(16) DEFAULT NULL,
  `by` bigint(20) unsigned DEFAULT NULL,
  `note` text DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_complaint_steps_complaint_id` (`complaint_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `complaints` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `category` varchar(24) DEFAULT NULL,
  `content` text DEFAULT NULL,
  `status` varchar(16) DEFAULT NULL,
  `department` varchar(32) DEFAULT NULL,
  `assignee_id` bigint(20) unsigned DEFAULT NULL,
  `resolution` text DEFAULT NULL,
  `reply` text DEFAULT NULL,
  `rating` bigint(20) DEFAULT NULL,
  `step_due_at` datetime(3) DEFAULT NULL,
  `resolved_at` datetime(3) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_complaints_patient_id` (`patient_id`),
  KEY `idx_complaints_status` (`status`),
  KEY `idx_complaints_department` (`department`),
  KEY `idx_complaints_assignee_id` (`assignee_id`),
  KEY `idx_complaints_created_at` (`created_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `consents` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `kind` varchar(16) DEFAULT NULL,
  `version` varchar(16) DEFAULT NULL,
  `granted` tinyint(1) DEFAULT NULL,
  `ip` varchar(64) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_consent_patient_kind` (`patient_id`,`kind`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `conversations` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `topic` varchar(32) DEFAULT NULL,
  `open_key` varchar(160) DEFAULT NULL,
  `department` varchar(64) DEFAULT NULL,
  `doctor_id` bigint(20) unsigned DEFAULT NULL,
  `status` varchar(8) DEFAULT NULL,
  `channel` varchar(4) DEFAULT NULL,
  `awaiting_since` datetime(3) DEFAULT NULL,
  `escalated_at` datetime(3) DEFAULT NULL,
  `staff_unread` bigint(20) DEFAULT NULL,
  `patient_unread` bigint(20) DEFAULT NULL,
  `last_message` text DEFAULT NULL,
  `last_message_at` datetime(3) DEFAULT NULL,
  `closed_at` datetime(3) DEFAULT NULL,
  `closed_by` bigint(20) unsigned DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_conversations_open_key` (`open_key`),
  KEY `idx_conversations_patient_id` (`patient_id`),
  KEY `idx_conversations_doctor_id` (`doctor_id`),
  KEY `idx_conversations_status` (`status`),
  KEY `idx_conversations_awaiting_since` (`awaiting_since`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `coupons` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `reward_id` bigint(20) unsigned DEFAULT NULL,
  `code` varchar(16) DEFAULT NULL,
  `redeem_key` varchar(96) DEFAULT NULL,
  `value_fen` bigint(20) DEFAULT NULL,
  `status` varchar(8) DEFAULT NULL,
  `booking_id` bigint(20) unsigned DEFAULT NULL,
  `expires_at` datetime(3) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_coupons_code` (`code`),
  KEY `idx_coupons_patient_id` (`patient_id`),
  KEY `idx_coupons_redeem_key` (`redeem_key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `doctor_duties` (
  `staff_id` bigint(20) unsigned NOT NULL,
  `department` varchar(64) DEFAULT NULL,
  `on_duty` tinyint(1) DEFAULT NULL,
  `assigned` bigint(20) unsigned DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`staff_id`),
  KEY `idx_doctor_duties_department` (`department`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `family_members` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `owner_id` bigint(20) unsigned DEFAULT NULL,
  `name` varchar(64) DEFAULT NULL,
  `relation` varchar(16) DEFAULT NULL,
  `gender` varchar(8) DEFAULT NULL,
  `birth_date` datetime(3) DEFAULT NULL,
  `phone_hash` varchar(64) DEFAULT NULL,
  `phone_enc` blob DEFAULT NULL,
  `phone_tail` varchar(4) DEFAULT NULL,
  `id_card_hash` varchar(64) DEFAULT NULL,
  `id_card_enc` blob DEFAULT NULL,
  `id_card_mask` varchar(18) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_family_members_owner_id` (`owner_id`),
  KEY `idx_family_members_phone_hash` (`phone_hash`),
  KEY `idx_family_members_phone_tail` (`phone_tail`),
  KEY `idx_family_members_id_card_hash` (`id_card_hash`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `file_chunks` (
  `key` varchar(191) NOT NULL,
  `seq` bigint(20) NOT NULL,
  `data` mediumblob DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`key`,`seq`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `followers` (
  `open_id` varchar(64) NOT NULL,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `union_id` varchar(64) DEFAULT NULL,
  `subscribed` tinyint(1) DEFAULT NULL,
  `scene` varchar(128) DEFAULT NULL,
  `subscribed_at` datetime(3) DEFAULT NULL,
  `window_opened_at` datetime(3) DEFAULT NULL,
  `window_replies` bigint(20) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`open_id`),
  KEY `idx_followers_patient_id` (`patient_id`),
  KEY `idx_followers_union_id` (`union_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `health_archives` (
  `patient_id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `data_enc` blob DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`patient_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `levels` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `name` varchar(32) DEFAULT NULL,
  `growth` bigint(20) DEFAULT NULL,
  `discount_pct` bigint(20) DEFAULT NULL,
  `free_consults` bigint(20) DEFAULT NULL,
  `booking_window_days` bigint(20) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `notifications` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `reason` varchar(32) DEFAULT NULL,
  `category` varchar(16) DEFAULT NULL,
  `dedupe_key` varchar(191) DEFAULT NULL,
  `params` text DEFAULT NULL,
  `page` varchar(255) DEFAULT NULL,
  `channel` varchar(16) DEFAULT NULL,
  `template_id` varchar(64) DEFAULT NULL,
  `payload` text DEFAULT NULL,
  `status` varchar(16) DEFAULT NULL,
  `due_at` datetime(3) DEFAULT NULL,
  `attempts` bigint(20) DEFAULT NULL,
  `last_error` varchar(512) DEFAULT NULL,
  `msg_id` varchar(64) DEFAULT NULL,
  `sent_at` datetime(3) DEFAULT NULL,
  `order_key` varchar(96) DEFAULT '',
  `claim_token` varchar(32) DEFAULT NULL,
  `lease_until` datetime(3) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_notifications_dedupe_key` (`dedupe_key`),
  KEY `idx_notifications_patient_id` (`patient_id`),
  KEY `idx_notifications_reason` (`reason`),
  KEY `idx_notify_due` (`status`,`due_at`),
  KEY `idx_notifications_order_key` (`order_key`),
  KEY `idx_notifications_claim_token` (`claim_token`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `notify_preferences` (
  `patient_id` bigint(20) unsigned NOT NULL,
  `category` varchar(16) NOT NULL,
  `opt_out` tinyint(1) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`patient_id`,`category`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `oa_events` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `dedupe_key` varchar(128) DEFAULT NULL,
  `open_id` varchar(64) DEFAULT NULL,
  `kind` varchar(32) DEFAULT NULL,
  `content` text DEFAULT NULL,
  `payload` text DEFAULT NULL,
  `status` varchar(8) DEFAULT 'done',
  `attempts` bigint(20) DEFAULT NULL,
  `last_error` varchar(255) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_oa_events_dedupe_key` (`dedupe_key`),
  KEY `idx_oa_events_open_id` (`open_id`),
  KEY `idx_oa_events_status` (`status`),
  KEY `idx_oa_events_updated_at` (`updated_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `packages` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `name` varchar(64) DEFAULT NULL,
  `description` text DEFAULT NULL,
  `items` text DEFAULT NULL,
  `price_fen` bigint(20) DEFAULT NULL,
  `gender` varchar(8) DEFAULT NULL,
  `min_age` bigint(20) DEFAULT NULL,
  `max_age` bigint(20) DEFAULT NULL,
  `slot_group` varchar(32) DEFAULT NULL,
  `active` tinyint(1) DEFAULT NULL,
  `sort_order` bigint(20) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `patient_tags` (
  `patient_id` bigint(20) unsigned NOT NULL,
  `tag_id` bigint(20) unsigned NOT NULL,
  `assigned_by` bigint(20) unsigned DEFAULT NULL,
  `assigned_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`patient_id`,`tag_id`),
  KEY `idx_patient_tags_tag_id` (`tag_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `patients` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `open_id` varchar(64) DEFAULT NULL,
  `union_id` varchar(64) DEFAULT NULL,
  `his_id` varchar(64) DEFAULT NULL,
  `phone_hash` varchar(64) DEFAULT NULL,
  `phone_enc` blob DEFAULT NULL,
  `phone_tail` varchar(4) DEFAULT NULL,
  `name` varchar(64) DEFAULT NULL,
  `gender` varchar(8) DEFAULT 'unknown',
  `birth_date` datetime(3) DEFAULT NULL,
  `id_card_hash` varchar(64) DEFAULT NULL,
  `id_card_enc` blob DEFAULT NULL,
  `id_card_mask` varchar(18) DEFAULT NULL,
  `region_code` varchar(6) DEFAULT NULL,
  `region` varchar(128) DEFAULT NULL,
  `source` varchar(128) DEFAULT NULL,
  `blocked_at` datetime(3) DEFAULT NULL,
  `erased_at` datetime(3) DEFAULT NULL,
  `retained_enc` blob DEFAULT NULL,
  `retained_until` datetime(3) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_patients_open_id` (`open_id`),
  UNIQUE KEY `idx_patients_his_id` (`his_id`),
  UNIQUE KEY `idx_patients_phone_hash` (`phone_hash`),
  UNIQUE KEY `idx_patients_id_card_hash` (`id_card_hash`),
  KEY `idx_patients_union_id` (`union_id`),
  KEY `idx_patients_phone_tail` (`phone_tail`),
  KEY `idx_patients_region_code` (`region_code`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `points_accounts` (
  `patient_id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `balance` bigint(20) DEFAULT NULL,
  `growth` bigint(20) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`patient_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `points_entries` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `kind` varchar(8) DEFAULT NULL,
  `amount` bigint(20) DEFAULT NULL,
  `remaining` bigint(20) DEFAULT NULL,
  `reason` varchar(128) DEFAULT NULL,
  `ref` varchar(64) DEFAULT NULL,
  `idempotency_key` varchar(96) DEFAULT NULL,
  `expires_at` datetime(3) DEFAULT NULL,
  `created_by` bigint(20) unsigned DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_points_entries_idempotency_key` (`idempotency_key`),
  KEY `idx_points_patient` (`patient_id`,`created_at`),
  KEY `idx_points_entries_expires_at` (`expires_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `report_versions` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `report_id` bigint(20) unsigned DEFAULT NULL,
  `version` bigint(20) DEFAULT NULL,
  `content_hash` varchar(64) DEFAULT NULL,
  `data_enc` mediumblob DEFAULT NULL,
  `pdf_key` varchar(128) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_report_version` (`report_id`,`version`),
  UNIQUE KEY `idx_report_content` (`report_id`,`content_hash`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `reports` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `source` varchar(32) DEFAULT NULL,
  `external_id` varchar(64) DEFAULT NULL,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `family_member_id` bigint(20) unsigned DEFAULT NULL,
  `booking_id` bigint(20) unsigned DEFAULT NULL,
  `exam_date` varchar(10) DEFAULT NULL,
  `doctor` varchar(32) DEFAULT NULL,
  `match` varchar(255) DEFAULT NULL,
  `version` bigint(20) DEFAULT NULL,
  `abnormal_count` bigint(20) DEFAULT NULL,
  `critical` tinyint(1) DEFAULT NULL,
  `interpretation` text DEFAULT NULL,
  `interpreted_by` bigint(20) unsigned DEFAULT NULL,
  `interpreted_at` datetime(3) DEFAULT NULL,
  `retained_until` datetime(3) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_report_source` (`source`,`external_id`),
  KEY `idx_reports_patient_id` (`patient_id`),
  KEY `idx_reports_family_member_id` (`family_member_id`),
  KEY `idx_reports_booking_id` (`booking_id`),
  KEY `idx_reports_exam_date` (`exam_date`),
  KEY `idx_reports_retained_until` (`retained_until`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `rewards` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `name` varchar(64) DEFAULT NULL,
  `kind` varchar(8) DEFAULT NULL,
  `cost_points` bigint(20) DEFAULT NULL,
  `stock` bigint(20) DEFAULT NULL,
  `coupon_value_fen` bigint(20) DEFAULT NULL,
  `active` tinyint(1) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `sessions` (
  `id` varchar(32) NOT NULL,
  `subject` varchar(8) DEFAULT NULL,
  `subject_id` bigint(20) unsigned DEFAULT NULL,
  `expires_at` datetime(3) DEFAULT NULL,
  `revoked_at` datetime(3) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_session_subject` (`subject`,`subject_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `settings` (
  `key` varchar(64) NOT NULL,
  `value` text DEFAULT NULL,
  `updated_by` bigint(20) unsigned DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`key`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `slots` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `date` varchar(10) DEFAULT NULL,
  `start` varchar(5) DEFAULT NULL,
  `end` varchar(5) DEFAULT NULL,
  `slot_group` varchar(32) DEFAULT NULL,
  `capacity` bigint(20) DEFAULT NULL,
  `booked` bigint(20) DEFAULT NULL,
  `closed` tinyint(1) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_slot_period` (`slot_group`,`date`,`start`),
  KEY `idx_slots_date` (`date`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `staffs` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `username` varchar(64) DEFAULT NULL,
  `password_hash` varchar(255) DEFAULT NULL,
  `name` varchar(64) DEFAULT NULL,
  `role` varchar(16) DEFAULT NULL,
  `disabled_at` datetime(3) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_staffs_username` (`username`),
  KEY `idx_staffs_role` (`role`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `subscribe_credits` (
  `patient_id` bigint(20) unsigned NOT NULL,
  `template_id` varchar(64) NOT NULL,
  `credits` bigint(20) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`patient_id`,`template_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `survey_invites` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `survey_id` bigint(20) unsigned DEFAULT NULL,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `occurrence` varchar(64) DEFAULT NULL,
  `booking_id` bigint(20) unsigned DEFAULT NULL,
  `package_id` bigint(20) unsigned DEFAULT NULL,
  `doctor_id` bigint(20) unsigned DEFAULT NULL,
  `department` varchar(32) DEFAULT NULL,
  `expires_at` datetime(3) DEFAULT NULL,
  `answered_at` datetime(3) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_invite_occurrence` (`patient_id`,`occurrence`),
  KEY `idx_survey_invites_survey_id` (`survey_id`),
  KEY `idx_survey_invites_patient_id` (`patient_id`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `survey_responses` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `invite_id` bigint(20) unsigned DEFAULT NULL,
  `survey_id` bigint(20) unsigned DEFAULT NULL,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `answers` text DEFAULT NULL,
  `nps` bigint(20) DEFAULT NULL,
  `csat` double DEFAULT NULL,
  `comment` text DEFAULT NULL,
  `package_id` bigint(20) unsigned DEFAULT NULL,
  `doctor_id` bigint(20) unsigned DEFAULT NULL,
  `department` varchar(32) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_survey_responses_invite_id` (`invite_id`),
  KEY `idx_survey_responses_survey_id` (`survey_id`),
  KEY `idx_survey_responses_patient_id` (`patient_id`),
  KEY `idx_survey_responses_created_at` (`created_at`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `surveys` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `code` varchar(32) DEFAULT NULL,
  `version` bigint(20) DEFAULT NULL,
  `name` varchar(64) DEFAULT NULL,
  `survey_trigger` varchar(24) DEFAULT NULL,
  `questions` text DEFAULT NULL,
  `active` tinyint(1) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_survey_version` (`code`,`version`),
  KEY `idx_surveys_trigger` (`survey_trigger`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `tags` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `name` varchar(64) DEFAULT NULL,
  `category` varchar(16) DEFAULT NULL,
  `kind` varchar(16) DEFAULT NULL,
  `description` varchar(255) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  UNIQUE KEY `idx_tags_name` (`name`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS `tasks` (
  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,
  `kind` varchar(32) DEFAULT NULL,
  `role` varchar(16) DEFAULT NULL,
  `urgent` tinyint(1) DEFAULT NULL,
  `patient_id` bigint(20) unsigned DEFAULT NULL,
  `report_id` bigint(20) unsigned DEFAULT NULL,
  `note` text DEFAULT NULL,
  `status` varchar(16) DEFAULT NULL,
  `assigned_to` bigint(20) unsigned DEFAULT NULL,
  `done_at` datetime(3) DEFAULT NULL,
  `retained_until` datetime(3) DEFAULT NULL,
  `created_at` datetime(3) DEFAULT NULL,
  `updated_at` datetime(3) DEFAULT NULL,
  PRIMARY KEY (`id`),
  KEY `idx_tasks_kind` (`kind`),
  KEY `idx_tasks_patient_id` (`patient_id`),
  KEY `idx_tasks_status` (`status`)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;


-- +goose Down
DROP TABLE IF EXISTS `tasks`;
DROP TABLE IF EXISTS `tags`;
DROP TABLE IF EXISTS `surveys`;
DROP TABLE IF EXISTS `survey_responses`;
DROP TABLE IF EXISTS `survey_invites`;
DROP TABLE IF EXISTS `subscribe_credits`;
DROP TABLE IF EXISTS `staffs`;
DROP TABLE IF EXISTS `slots`;
DROP TABLE IF EXISTS `settings`;
DROP TABLE IF EXISTS `sessions`;
DROP TABLE IF EXISTS `rewards`;
DROP TABLE IF EXISTS `reports`;
DROP TABLE IF EXISTS `report_versions`;
DROP TABLE IF EXISTS `points_entries`;
DROP TABLE IF EXISTS `points_accounts`;
DROP TABLE IF EXISTS `patients`;
DROP TABLE IF EXISTS `patient_tags`;
DROP TABLE IF EXISTS `packages`;
DROP TABLE IF EXISTS `oa_events`;
DROP TABLE IF EXISTS `notify_preferences`;
DROP TABLE IF EXISTS `notifications`;
DROP TABLE IF EXISTS `levels`;
DROP TABLE IF EXISTS `health_archives`;
DROP TABLE IF EXISTS `followers`;
DROP TABLE IF EXISTS `file_chunks`;
DROP TABLE IF EXISTS `family_members`;
DROP TABLE IF EXISTS `doctor_duties`;
DROP TABLE IF EXISTS `coupons`;
DROP TABLE IF EXISTS `conversations`;
DROP TABLE IF EXISTS `consents`;
DROP TABLE IF EXISTS `complaints`;
DROP TABLE IF EXISTS `complaint_steps`;
DROP TABLE IF EXISTS `closed_days`;
DROP TABLE IF EXISTS `chat_uploads`;
DROP TABLE IF EXISTS `chat_messages`;
DROP TABLE IF EXISTS `canned_replies`;
DROP TABLE IF EXISTS `bookings`;
DROP TABLE IF EXISTS `auto_replies`;
DROP TABLE IF EXISTS `audit_logs`;
