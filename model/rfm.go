package model

import "time"

// RFM run states.
const (
	RFMQueued  = "queued"
	RFMRunning = "running"
	RFMDone    = "done"
	RFMFailed  = "failed"
)

// Value tiers of the customer pyramid (Zeithaml, Rust & Lemon 2001).
const (
	TierPlatinum = "platinum" // 白金
	TierGold     = "gold"     // 黄金
	TierIron     = "iron"     // 铁
	TierLead     = "lead"     // 铅
)

// TierNames are the tiers as staff read them.
var TierNames = map[string]string{TierPlatinum: "白金", TierGold: "黄金", TierIron: "铁", TierLead: "铅"}

// RFMRun is one scoring of every patient over the trailing 24 months of
// completed checkups, kept as a snapshot: the thresholds it used, the
// tier counts, and the migration from the run before (JSON).
type RFMRun struct {
	ID         uint64 `gorm:"primaryKey"`
	Status     string `gorm:"size:16;index"`
	Thresholds string `gorm:"type:text"`
	Tiers      string `gorm:"type:text"`
	Migration  string `gorm:"type:text"`
	PrevRunID  *uint64
	Patients   int // patients scored
	Quintiles  bool
	AsOf       time.Time
	LastError  string `gorm:"size:512"`
	ClaimToken string `gorm:"size:32"`
	LeaseUntil *time.Time
	StaffID    uint64
	CreatedAt  time.Time
	FinishedAt *time.Time
}

// RFMScore is a patient's scores and tier in one run: R days since the
// last completed checkup, F how many, M what they paid (fen, after
// coupons), each scored 1–5.
type RFMScore struct {
	RunID     uint64 `gorm:"primaryKey"`
	PatientID uint64 `gorm:"primaryKey;index"`
	R         int
	F         int
	M         int64
	RScore    int8
	FScore    int8
	MScore    int8
	Tier      string `gorm:"size:8;index"`
}
