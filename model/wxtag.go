package model

import "time"

// WxTag mirrors a careloop tag as a WeChat user tag of the official
// account, so that conditional menus and mass sends by tag reach the
// patients careloop means. Sync is incremental: WxTagMember holds what
// WeChat has, and each round tags and untags the difference.
type WxTag struct {
	TagID     uint64 `gorm:"primaryKey"` // the careloop tag
	WxTagID   int
	Name      string `gorm:"size:30"`
	Members   int    // openids WeChat has under the tag
	Pending   int    // left to tag or untag at the last round
	OverLimit int    // followers WeChat refused: they hold 20 tags already
	SyncedAt  *time.Time
	LastError string `gorm:"size:512"`
	CreatedAt time.Time
	UpdatedAt time.Time
}

// WxTagMember is an official-account openid WeChat holds under a mirrored
// tag.
type WxTagMember struct {
	TagID  uint64 `gorm:"primaryKey"`
	OpenID string `gorm:"primaryKey;size:64;index"`
}
