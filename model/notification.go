package model

import "time"

// Notification statuses. A row moves pending → claimed (a worker holds a
// lease) → sending (the WeChat request is about to leave) → sent, or back to
// pending with a later next attempt, or to dead / undeliverable / cancelled.
const (
	NotifyPending       = "pending"
	NotifyClaimed       = "claimed"
	NotifySending       = "sending"
	NotifySent          = "sent"
	NotifyFailed        = "failed" // waiting for its next attempt
	NotifyDead          = "dead"
	NotifyUndeliverable = "undeliverable"
	NotifyCancelled     = "cancelled"
	// NotifyPaused: held with its campaign (not claimed until resumed).
	NotifyPaused = "paused"
)

// Notification categories decide quiet hours and opt-outs.
const (
	CategoryService   = "service"   // the patient's own action: always, at once
	CategoryUrgent    = "urgent"    // critical values: always, at once
	CategoryCare      = "care"      // reminders and care: waits out quiet hours, can be opted out of
	CategoryMarketing = "marketing" // needs the marketing consent; waits out quiet hours
)

// Notification is one notice to one patient: the outbox row business code
// writes in its own transaction and the dispatcher delivers.
type Notification struct {
	ID        uint64 `gorm:"primaryKey"`
	PatientID uint64 `gorm:"index"`
	Reason    string `gorm:"size:32;index"`
	Category  string `gorm:"size:16"`
	// DedupeKey is reason + patient + occurrence: one notice per occurrence.
	DedupeKey string `gorm:"size:191;uniqueIndex"`
	// Params are the business values (JSON); each channel renders them into
	// its template's fields at send time.
	Params string `gorm:"type:text;serializer:sealed"`
	Page   string `gorm:"size:255"`
	// Channel, TemplateID and Payload say what was (last) sent.
	Channel    string    `gorm:"size:16"`
	TemplateID string    `gorm:"size:64"`
	Payload    string    `gorm:"type:text;serializer:sealed"`
	Status     string    `gorm:"size:16;index:idx_notify_due,priority:1"`
	DueAt      time.Time `gorm:"index:idx_notify_due,priority:2"`
	Attempts   int
	LastError  string `gorm:"size:512"`
	MsgID      string `gorm:"size:64"`
	SentAt     *time.Time
	// OrderKey, when set, makes rows with the same key go out one at a
	// time in the order written: a row is claimed only once every earlier
	// row of its key is finished (doctor replies to one patient).
	OrderKey   string `gorm:"size:96;index;default:''"`
	ClaimToken string `gorm:"size:32;index"`
	LeaseUntil *time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Terminal reports whether the row is finished.
func (n *Notification) Terminal() bool {
	switch n.Status {
	case NotifySent, NotifyDead, NotifyUndeliverable, NotifyCancelled:
		return true
	}
	return false
}

// SubscribeCredit counts the sends a patient granted for one subscribe
// template (one per "accept" in wx.requestSubscribeMessage).
type SubscribeCredit struct {
	PatientID  uint64 `gorm:"primaryKey"`
	TemplateID string `gorm:"primaryKey;size:64"`
	Credits    int
	UpdatedAt  time.Time
}

// Follower is a follower of the official account, linked to a patient
// through the unionid.
type Follower struct {
	OpenID       string  `gorm:"primaryKey;size:64"`
	PatientID    *uint64 `gorm:"index"`
	UnionID      string  `gorm:"size:64;index"`
	Subscribed   bool
	Scene        string `gorm:"size:128"`
	SubscribedAt time.Time
	// WindowOpenedAt is the follower's last message to us: it opens WeChat's
	// 48-hour customer-service window, in which WindowReplies (at most 5)
	// customer messages may answer.
	WindowOpenedAt *time.Time
	WindowReplies  int
	UpdatedAt      time.Time
}

// NotifyPreference records a patient's opt-out of one category.
type NotifyPreference struct {
	PatientID uint64 `gorm:"primaryKey"`
	Category  string `gorm:"primaryKey;size:16"`
	OptOut    bool
	UpdatedAt time.Time
}
