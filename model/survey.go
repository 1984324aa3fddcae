package model

import "time"

// Survey triggers.
const (
	TriggerAfterCheckup   = "after_checkup"
	TriggerAfterChat      = "after_chat"
	TriggerAfterComplaint = "after_complaint"
)

// Survey is one version of a satisfaction survey; editing a survey adds a
// version, so answers always refer to the questions they answered.
type Survey struct {
	ID        uint64 `gorm:"primaryKey"`
	Code      string `gorm:"size:32;uniqueIndex:idx_survey_version,priority:1"`
	Version   int    `gorm:"uniqueIndex:idx_survey_version,priority:2"`
	Name      string `gorm:"size:64"`
	Trigger   string `gorm:"column:survey_trigger;size:24;index"` // "trigger" is reserved in MySQL
	Questions string `gorm:"type:text"`                           // JSON
	Active    bool   // only the latest version of a code is active
	CreatedAt time.Time
}

// SurveyInvite asks one patient to answer one survey for one occurrence.
type SurveyInvite struct {
	ID         uint64 `gorm:"primaryKey"`
	SurveyID   uint64 `gorm:"index"`
	PatientID  uint64 `gorm:"index;uniqueIndex:idx_invite_occurrence,priority:1"`
	Occurrence string `gorm:"size:64;uniqueIndex:idx_invite_occurrence,priority:2"` // booking-12, chat-3 …
	BookingID  *uint64
	PackageID  *uint64
	DoctorID   uint64
	Department string `gorm:"size:32"`
	ExpiresAt  time.Time
	AnsweredAt *time.Time
	CreatedAt  time.Time
}

// SurveyResponse is the one answer to an invitation.
type SurveyResponse struct {
	ID         uint64 `gorm:"primaryKey"`
	InviteID   uint64 `gorm:"uniqueIndex"`
	SurveyID   uint64 `gorm:"index"`
	PatientID  uint64 `gorm:"index"`
	Answers    string `gorm:"type:text"` // JSON
	NPS        *int
	CSAT       *float64 // mean of the 1–5 ratings
	Comment    string   `gorm:"type:text"`
	PackageID  *uint64
	DoctorID   uint64
	Department string    `gorm:"size:32"`
	CreatedAt  time.Time `gorm:"index"`
}
