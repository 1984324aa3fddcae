package model

import "time"

// OAEvent is an accepted official-account message or event; the unique
// dedupe key makes WeChat's retries no-ops.
type OAEvent struct {
	ID        uint64 `gorm:"primaryKey"`
	DedupeKey string `gorm:"size:128;uniqueIndex"`
	OpenID    string `gorm:"size:64;index"`
	Kind      string `gorm:"size:32"`
	Content   string `gorm:"type:text"`
	CreatedAt time.Time
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
