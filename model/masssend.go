package model

import "time"

// Mass-send states.
const (
	MassQueued  = "queued"  // written; its recipients not yet prepared
	MassSending = "sending" // batches prepared, being sent or awaiting WeChat's results
	MassDone    = "done"    // every batch ended (some may have failed)
	MassFailed  = "failed"  // nothing could be sent
)

// Mass-send targets.
const (
	MassToAll      = "all"
	MassToTag      = "tag"
	MassToPatients = "patients"
)

// MassMonthlyLimit is how many mass messages a follower of a service
// account receives in a calendar month; WeChat filters the rest.
const MassMonthlyLimit = 4

// MassSend is one mass send (群发) of an article or a text to the
// official account's followers: all of them, those of a careloop tag, or
// a list of patients. Its recipients are prepared once into MassBatch
// rows; the counts sum the batches' results.
type MassSend struct {
	ID         uint64 `gorm:"primaryKey"`
	ArticleID  *uint64
	Text       string `gorm:"type:text"`
	TargetKind string `gorm:"size:16"`
	TagID      *uint64
	PatientIDs string `gorm:"type:mediumtext"` // JSON list, for the patients target
	Status     string `gorm:"size:16;index"`
	// Recipients prepared (for "all": the followers careloop knows).
	Total int
	// Skipped by careloop: over the monthly limit, or not following.
	SkippedMonthly   int
	SkippedNotFollow int
	// WeChat's results, summed over the batches.
	Filtered    int
	Sent        int
	Errors      int
	Batches     int
	BatchesDone int
	LastError   string `gorm:"size:512"`
	ClaimToken  string `gorm:"size:32"`
	LeaseUntil  *time.Time
	StaffID     uint64
	CreatedAt   time.Time
	UpdatedAt   time.Time
	FinishedAt  *time.Time
}

// Mass batch states.
const (
	BatchPending = "pending" // not yet accepted by WeChat
	BatchSent    = "sent"    // accepted (MsgID); its result awaited
	BatchDone    = "done"    // WeChat's result recorded
	BatchFailed  = "failed"  // WeChat refused it for good
)

// MassBatch is one call of a mass send: up to 10,000 openids (or, ToAll,
// every follower) under its own ClientMsgID, which WeChat de-duplicates
// for 24 hours, so that a batch sent again after a crash is not sent
// twice (45065 answers the first msg_id).
type MassBatch struct {
	ID          uint64 `gorm:"primaryKey"`
	MassSendID  uint64 `gorm:"index"`
	Seq         int
	ToAll       bool
	OpenIDs     string `gorm:"type:mediumtext"` // JSON list
	Count       int
	ClientMsgID string `gorm:"size:64;uniqueIndex"`
	Status      string `gorm:"size:16;index"`
	MsgID       string `gorm:"size:32;index"`
	WxStatus    string `gorm:"size:64"`
	Total       int
	Filtered    int
	Sent        int
	Errors      int
	Attempts    int
	LastError   string `gorm:"size:512"`
	SentAt      *time.Time
	PolledAt    *time.Time
	FinishedAt  *time.Time
}

// MassReceipt counts the mass messages careloop sent a follower (by
// official-account openid) in a month (yyyy-mm, Asia/Shanghai): WeChat
// delivers at most MassMonthlyLimit, so careloop skips those who had them.
type MassReceipt struct {
	OpenID string `gorm:"primaryKey;size:64"`
	Month  string `gorm:"primaryKey;size:7"`
	Count  int
}

// WxDraft is WeChat's draft of one version of an article, made for a
// preview or a mass send (publishing makes its own).
type WxDraft struct {
	ID        uint64 `gorm:"primaryKey"`
	ArticleID uint64 `gorm:"uniqueIndex:idx_wx_draft,priority:1"`
	Version   int    `gorm:"uniqueIndex:idx_wx_draft,priority:2"`
	MediaID   string `gorm:"size:128"`
	CreatedAt time.Time
}

// MassJobResult is WeChat's result of a mass send that came before careloop
// had written down the batch's msg_id (the worker that sent it died, or the
// event overtook the write): kept until the batch claims it.
type MassJobResult struct {
	MsgID      string `gorm:"primaryKey;size:32"`
	Status     string `gorm:"size:64"`
	Total      int
	Filtered   int
	Sent       int
	Errors     int
	ReceivedAt time.Time
}
