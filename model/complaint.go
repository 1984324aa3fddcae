package model

import "time"

// Complaint statuses, in order.
const (
	ComplaintReceived      = "received"
	ComplaintAssigned      = "assigned"
	ComplaintInvestigating = "investigating"
	ComplaintProposed      = "proposed"
	ComplaintApproved      = "approved"
	ComplaintReplied       = "replied"
	ComplaintRated         = "rated"
)

// ComplaintNext is the one step each status may move to.
var ComplaintNext = map[string]string{
	ComplaintReceived:      ComplaintAssigned,
	ComplaintAssigned:      ComplaintInvestigating,
	ComplaintInvestigating: ComplaintProposed,
	ComplaintProposed:      ComplaintApproved,
	ComplaintApproved:      ComplaintReplied,
	ComplaintReplied:       ComplaintRated,
}

// Complaint is a patient's complaint (投诉) and where it stands.
type Complaint struct {
	ID         uint64 `gorm:"primaryKey"`
	PatientID  uint64 `gorm:"index"`
	Category   string `gorm:"size:24"` // service_attitude, environment, medical_quality, billing, other
	Content    string `gorm:"type:text;serializer:sealed"`
	Status     string `gorm:"size:16;index"`
	Department string `gorm:"size:32;index"`
	AssigneeID uint64 `gorm:"index"`
	Resolution string `gorm:"type:text;serializer:sealed"`
	Reply      string `gorm:"type:text;serializer:sealed"`
	Rating     *int
	StepDueAt  *time.Time // the current step is overdue after this
	ResolvedAt *time.Time // when the reply went out
	CreatedAt  time.Time  `gorm:"index"`
	UpdatedAt  time.Time
}

// ComplaintStep records each move: who, when, from where to where.
type ComplaintStep struct {
	ID          uint64 `gorm:"primaryKey"`
	ComplaintID uint64 `gorm:"index"`
	From, To    string `gorm:"size:16"`
	By          uint64 // staff id; 0 for the patient
	Note        string `gorm:"type:text;serializer:sealed"`
	CreatedAt   time.Time
}
