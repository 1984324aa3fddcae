package model

import "time"

// HealthArchive is a patient's health archive (基本信息标签): allergies,
// medications, past history. The whole document is sealed (AES-GCM).
type HealthArchive struct {
	PatientID uint64 `gorm:"primaryKey"`
	DataEnc   []byte `gorm:"type:blob"`
	UpdatedAt time.Time
}

// FamilyMember is a relative a patient manages (就诊人): they may book for
// them and read their reports.
type FamilyMember struct {
	ID        uint64 `gorm:"primaryKey"`
	OwnerID   uint64 `gorm:"index"`
	Name      string `gorm:"size:64"`
	Relation  string `gorm:"size:16"` // spouse, child, parent, sibling, other
	Gender    string `gorm:"size:8"`
	BirthDate *time.Time
	PhoneHash *string `gorm:"size:64;index"`
	PhoneEnc  []byte  `gorm:"type:blob"`
	PhoneTail string  `gorm:"size:4;index"`
	// The ID card as on Patient (not unique: a relative may be a patient too).
	IDCardHash *string `gorm:"size:64;index"`
	IDCardEnc  []byte  `gorm:"type:blob"`
	IDCardMask string  `gorm:"size:18"`
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Consent kinds (PIPL: health data is sensitive personal information and
// needs its own consent; marketing is separate and can be withdrawn).
const (
	ConsentHealthData = "health_data"
	ConsentMarketing  = "marketing"
)

// Consent is one decision of a patient about one kind of processing, at one
// version of its text. Rows are only ever added; the latest per kind counts.
type Consent struct {
	ID        uint64 `gorm:"primaryKey"`
	PatientID uint64 `gorm:"index:idx_consent_patient_kind,priority:1"`
	Kind      string `gorm:"size:16;index:idx_consent_patient_kind,priority:2"`
	Version   string `gorm:"size:16"`
	Granted   bool
	IP        string `gorm:"size:64"`
	CreatedAt time.Time
}

// Tag categories and kinds of the patient portrait (客户画像).
const (
	TagBasic    = "basic"
	TagExtended = "extended"
	TagService  = "service"
	TagFollowUp = "follow_up"

	TagFact       = "fact"
	TagModel      = "model"
	TagPredictive = "predictive"
)

// Tag is an entry of the tag catalogue.
type Tag struct {
	ID          uint64 `gorm:"primaryKey"`
	Name        string `gorm:"size:64;uniqueIndex"`
	Category    string `gorm:"size:16"`
	Kind        string `gorm:"size:16"`
	Description string `gorm:"size:255"`
	CreatedAt   time.Time
}

// PatientTag puts a tag on a patient, saying who did and when. AssignedBy is
// the staff id, or 0 when the system assigned it.
type PatientTag struct {
	PatientID  uint64 `gorm:"primaryKey"`
	TagID      uint64 `gorm:"primaryKey;index"`
	AssignedBy uint64
	AssignedAt time.Time
}

// AuditLog records every staff read of a patient's health data or reports,
// every export and every change to a patient: who, what, when, from where.
type AuditLog struct {
	ID        uint64    `gorm:"primaryKey"`
	StaffID   uint64    `gorm:"index"`
	Role      string    `gorm:"size:16"`
	Action    string    `gorm:"size:48;index"`
	PatientID *uint64   `gorm:"index"`
	Detail    string    `gorm:"size:512"`
	IP        string    `gorm:"size:64"`
	CreatedAt time.Time `gorm:"index"`
}
