package model

import "time"

// Report is a checkup report from the hospital's PEIS/LIS, identified by
// its source and the source's own id. PatientID is nil while the report
// waits in the unmatched queue for staff to link it by hand.
type Report struct {
	ID             uint64  `gorm:"primaryKey"`
	Source         string  `gorm:"size:32;uniqueIndex:idx_report_source,priority:1"`
	ExternalID     string  `gorm:"size:64;uniqueIndex:idx_report_source,priority:2"`
	PatientID      *uint64 `gorm:"index"`
	FamilyMemberID *uint64 `gorm:"index"`
	BookingID      *uint64 `gorm:"index"`
	ExamDate       string  `gorm:"size:10;index"`
	Doctor         string  `gorm:"size:32"`
	// Match keeps what identified (or failed to identify) the patient, for
	// the unmatched queue: booking code, HIS id, masked phone.
	Match          string `gorm:"size:255"`
	Version        int    // the visible version
	AbnormalCount  int
	Critical       bool
	Interpretation string `gorm:"type:text;serializer:sealed"`
	InterpretedBy  uint64
	InterpretedAt  *time.Time
	// RetainedUntil is set when the patient erased their account: the
	// report is kept sealed for the legal retention period and nothing lists,
	// searches, analyses or sends it.
	RetainedUntil *time.Time `gorm:"index"`
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// ReportVersion is one received version of a report. The content (sections,
// items, conclusions) is sealed; ContentHash makes re-sends idempotent.
type ReportVersion struct {
	ID          uint64 `gorm:"primaryKey"`
	ReportID    uint64 `gorm:"uniqueIndex:idx_report_version,priority:1;uniqueIndex:idx_report_content,priority:1"`
	Version     int    `gorm:"uniqueIndex:idx_report_version,priority:2"`
	ContentHash string `gorm:"size:64;uniqueIndex:idx_report_content,priority:2"`
	DataEnc     []byte `gorm:"type:mediumblob"`
	PDFKey      string `gorm:"size:128"`
	CreatedAt   time.Time
}

// Task kinds for staff.
const (
	TaskCriticalValue  = "critical_value"
	TaskInterpretation = "interpretation_request"
)

// Task is work for staff: an urgent critical value for the doctors on
// duty, a patient's request for an interpretation.
type Task struct {
	ID         uint64 `gorm:"primaryKey"`
	Kind       string `gorm:"size:32;index"`
	Role       string `gorm:"size:16"` // who should pick it up
	Urgent     bool
	PatientID  uint64 `gorm:"index"`
	ReportID   *uint64
	Note       string `gorm:"type:text;serializer:sealed"`
	Status     string `gorm:"size:16;index"` // open, done
	AssignedTo uint64
	DoneAt     *time.Time
	// RetainedUntil: as for reports (clinical tasks of an erased patient).
	RetainedUntil *time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
}
