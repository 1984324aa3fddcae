package model

import "time"

// Conversation states.
const (
	ConversationOpen   = "open"
	ConversationClosed = "closed"
)

// Chat senders.
const (
	SenderPatient = "patient"
	SenderStaff   = "staff"
	SenderSystem  = "system" // automatic replies and routing notes
)

// Conversation is a patient's consultation on one topic (在线咨询). A patient
// has at most one open conversation per topic: OpenKey is "patient|topic"
// while open and NULL once closed, and it is unique.
type Conversation struct {
	ID         uint64  `gorm:"primaryKey"`
	PatientID  uint64  `gorm:"index"`
	Topic      string  `gorm:"size:32"`
	OpenKey    *string `gorm:"size:160;uniqueIndex"`
	Department string  `gorm:"size:64"`
	// DoctorID is the doctor who answers; nil while unassigned.
	DoctorID *uint64 `gorm:"index"`
	Status   string  `gorm:"size:8;index"`
	// Channel is where the patient last wrote from: mp or oa.
	Channel string `gorm:"size:4"`
	// AwaitingSince is the patient's first message not yet answered by
	// staff; nil when nothing waits. Escalation runs on it.
	AwaitingSince *time.Time `gorm:"index"`
	EscalatedAt   *time.Time
	// StaffUnread and PatientUnread count messages the other side wrote
	// since that side last read the conversation.
	StaffUnread   int
	PatientUnread int
	LastMessage   string `gorm:"type:text;serializer:sealed"`
	LastMessageAt time.Time
	ClosedAt      *time.Time
	ClosedBy      uint64
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// ChatMessage is one message of a conversation.
type ChatMessage struct {
	ID             uint64 `gorm:"primaryKey"`
	ConversationID uint64 `gorm:"index"`
	Sender         string `gorm:"size:8"`
	StaffID        uint64
	Kind           string `gorm:"size:8"` // text or image
	Content        string `gorm:"type:text;serializer:sealed"`
	// Channel is where a patient's message came from (mp, oa) or how a
	// staff reply reached the patient.
	Channel string `gorm:"size:4"`
	// ClientKey makes a resent message (a retried request, WeChat's retry)
	// a no-op: "conversation-scoped key" for mp, the MsgId for oa.
	ClientKey *string `gorm:"size:96;uniqueIndex"`
	// ImageKey is the stored file of an image the patient uploaded, for
	// finding who may see it.
	ImageKey  *string `gorm:"size:64;index"`
	CreatedAt time.Time
}

// ChatUpload is an image a patient uploaded to send: it may be sent once,
// by that patient, and is then the image of that message only; an upload
// never sent expires.
type ChatUpload struct {
	Key       string `gorm:"primaryKey;size:64"`
	PatientID uint64 `gorm:"index"`
	MessageID *uint64
	CreatedAt time.Time `gorm:"index"`
}

// DoctorDuty is a doctor's chat availability: department, on duty or not,
// and how many conversations routing has given them (round-robin gives the
// next one to the on-duty doctor with the fewest; a conditional update on
// Assigned decides between concurrent routings).
type DoctorDuty struct {
	StaffID    uint64 `gorm:"primaryKey;autoIncrement:false"`
	Department string `gorm:"size:64;index"`
	OnDuty     bool
	Assigned   uint64
	UpdatedAt  time.Time
}

// CannedReply is a prepared answer staff insert into a chat; StaffID 0 is
// shared by everyone.
type CannedReply struct {
	ID        uint64 `gorm:"primaryKey"`
	StaffID   uint64 `gorm:"index"`
	Title     string `gorm:"size:64"`
	Content   string `gorm:"type:text"`
	CreatedAt time.Time
}

// FileChunk is a piece of a stored file (report PDFs, chat images) when
// files live in the database: every instance reads what any instance wrote.
type FileChunk struct {
	Key       string `gorm:"primaryKey;size:191"`
	Seq       int    `gorm:"primaryKey;autoIncrement:false"`
	Data      []byte `gorm:"type:mediumblob"`
	CreatedAt time.Time
}
