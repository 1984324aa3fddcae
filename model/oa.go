package model

import "time"

// OA event states: the callback stores the event before it answers
// WeChat; what needs more than the answer (filing a message into a doctor
// chat, linking a new follower) is finished by then or by a worker later.
const (
	OAEventPending = "pending"
	OAEventDone    = "done"
	OAEventFailed  = "failed"
)

// OAEvent is an accepted official-account message or event; the unique
// dedupe key makes WeChat's retries no-ops.
type OAEvent struct {
	ID        uint64 `gorm:"primaryKey"`
	DedupeKey string `gorm:"size:128;uniqueIndex"`
	OpenID    string `gorm:"size:64;index"`
	Kind      string `gorm:"size:32"`
	Content   string `gorm:"type:text;serializer:sealed"`
	// Payload is the whole decoded message (JSON), to finish it later.
	Payload   string `gorm:"type:text;serializer:sealed"`
	Status    string `gorm:"size:8;index;default:done"`
	Attempts  int
	LastError string `gorm:"size:255"`
	CreatedAt time.Time
	UpdatedAt time.Time `gorm:"index"`
}

// AutoReply answers a keyword on the official account.
type AutoReply struct {
	ID        uint64 `gorm:"primaryKey"`
	Keyword   string `gorm:"size:64"`
	Match     string `gorm:"size:8"` // exact or contains
	Priority  int
	Reply     string `gorm:"type:text"`
	Active    bool
	CreatedAt time.Time
	UpdatedAt time.Time
}
