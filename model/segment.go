package model

import "time"

// Segment purposes. Health data (report findings, the health archive) may
// be a condition only of a care segment (PIPL sensitive personal
// information: used for the patient's care, never to market to them).
const (
	SegmentMarketing = "marketing"
	SegmentCare      = "care"
)

// Segment is a saved filter over patients: groups of conditions joined by
// AND/OR (the condition language is in api/openapi.yaml). Its members are
// found afresh on every use; TagID, when set, is the computed tag its
// members carry (refreshed by the computed-tags job) so that the segment can
// be mirrored as a WeChat user tag.
type Segment struct {
	ID         uint64 `gorm:"primaryKey"`
	Name       string `gorm:"size:64;uniqueIndex"`
	Purpose    string `gorm:"size:16"`
	Conditions string `gorm:"type:text"` // JSON
	TagID      *uint64
	StaffID    uint64
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// ComputedTag is a tag careloop computes rather than staff type: a model
// tag (the RFM tier), a predictive one (due for the annual re-check, at
// risk of lapsing, likely to respond), or a segment's members. Rule says
// in Chinese how it is computed; ComputedAt when it last was.
type ComputedTag struct {
	TagID      uint64 `gorm:"primaryKey;autoIncrement:false"`
	Key        string `gorm:"size:64;uniqueIndex"`
	Rule       string `gorm:"size:512"`
	Members    int
	ComputedAt *time.Time
	UpdatedAt  time.Time
}

// HealthMark indexes one health fact of a patient for care segments: an
// abnormal item of a report (by its name and by its code), or an entry of
// the health archive (past or family history, allergy, medication). Only a
// keyed hash of the name is stored, never the name; the marks are rebuilt
// from the sealed sources (reports, archives) whenever the keys rotate.
type HealthMark struct {
	ID        uint64 `gorm:"primaryKey"`
	PatientID uint64 `gorm:"index"`
	Kind      string `gorm:"size:16;index:idx_health_mark,priority:1"`
	Hash      string `gorm:"size:64;index:idx_health_mark,priority:2"`
	ReportID  uint64 `gorm:"index"`   // 0: the health archive
	Date      string `gorm:"size:10"` // the exam date; the archive's last change
}

// PatientVisit sums up a patient's bookings for segments, so that a count
// over a million patients reads one narrow row each instead of grouping
// millions of bookings: the last completed checkup's day, how many were
// completed, the no-shows, and the last day of a booking still to come
// (booked or checked in). Kept by service.Visits from the bookings changed
// since its watermark; rebuilt whole when the watermark is missing.
type PatientVisit struct {
	PatientID     uint64  `gorm:"primaryKey;autoIncrement:false"`
	LastCompleted *string `gorm:"size:10;index"`
	Completed     int     `gorm:"index"`
	NoShows       int     `gorm:"index"`
	UpcomingUntil *string `gorm:"size:10;index"`
	UpdatedAt     time.Time
}
