package model

import "time"

// Import job states.
const (
	ImportQueued  = "queued"
	ImportRunning = "running"
	ImportDone    = "done"
	ImportFailed  = "failed"
)

// ImportJob is a HIS export uploaded in the console and imported in the
// background: a worker claims it (ClaimToken, LeaseUntil, as the
// dispatcher claims notices) and records its progress after every batch,
// so any instance can answer how far it is. The upload is kept sealed in
// the file store (FileKey) only until the job ends; the refused rows stay
// as a CSV (ErrorsKey).
type ImportJob struct {
	ID        uint64 `gorm:"primaryKey"`
	StaffID   uint64 `gorm:"index"`
	FileName  string `gorm:"size:255"`
	FileKey   string `gorm:"size:128"`
	Status    string `gorm:"size:16;index"`
	Total     int    // data rows the file holds, as known ahead (0: unknown)
	Done      int    // data rows read so far
	Created   int
	Updated   int
	Unchanged int
	Rejected  int
	ErrorsKey string `gorm:"size:128"`
	LastError string `gorm:"size:512"`
	Attempts  int
	// ClaimToken and LeaseUntil say which worker runs the job and until
	// when; a lease run out (the worker died) lets another take it over
	// (the import is idempotent, so it simply starts again).
	ClaimToken string `gorm:"size:32"`
	LeaseUntil *time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt *time.Time
}
