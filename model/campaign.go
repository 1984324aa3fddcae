package model

import "time"

// Campaign states.
const (
	CampaignDraft     = "draft"     // written, not started
	CampaignScheduled = "scheduled" // started, waiting for its start time
	CampaignPreparing = "preparing" // its recipients being prepared, batch by batch
	CampaignSending   = "sending"   // prepared; messages going out
	CampaignPaused    = "paused"    // held: nothing prepared or sent until resumed
	CampaignDone      = "done"      // every message ended
	CampaignCancelled = "cancelled" // stopped for good; what was not sent never is
)

// Campaign channels.
const (
	CampaignSubscribe = "subscribe" // a subscribe message to patients holding a credit
	CampaignMass      = "mass"      // an article or text by mass send to followers
)

// Why a recipient was skipped.
const (
	SkipNoConsent   = "no_consent"   // did not agree to marketing
	SkipOptedOut    = "opted_out"    // opted out of marketing messages
	SkipCapped      = "capped"       // the fatigue cap (week or month) is reached
	SkipNoCredit    = "no_credit"    // holds no credit for the template
	SkipNotFollower = "not_follower" // does not follow the official account
	SkipMassLimit   = "mass_limit"   // had WeChat's 4 mass messages this month
)

// Campaign is a marketing send to a segment: a subscribe message (template
// and data) or a mass send (article or text), an optional coupon for every
// recipient, a start time, and a conversion goal. Message holds the
// variants as JSON (one, or two for an A/B split). Recipients are prepared
// in batches of patient ids after PreparedThrough, so a worker that dies
// resumes where the last committed batch ended.
type Campaign struct {
	ID             uint64 `gorm:"primaryKey"`
	Name           string `gorm:"size:64"`
	SegmentID      uint64 `gorm:"index"`
	Channel        string `gorm:"size:16"`
	TemplateID     string `gorm:"size:64"`
	Page           string `gorm:"size:255"`
	Message        string `gorm:"type:text"` // JSON: the variants
	CouponRewardID *uint64
	GoalKind       string `gorm:"size:16"` // booking, coupon
	GoalPackageID  *uint64
	GoalDays       int
	StartAt        time.Time
	Status         string `gorm:"size:16;index"`
	// PausedFrom is the state a pause interrupted (preparing or sending).
	PausedFrom      string `gorm:"size:16"`
	PreparedThrough uint64 // the last patient id prepared
	Prepared        int
	// MassSendIDs are the mass sends (one per variant), for the mass channel.
	MassSendIDs string `gorm:"size:255"`
	// ConversionsAt is when conversions were last attributed.
	ConversionsAt *time.Time
	LastError     string `gorm:"size:512"`
	ClaimToken    string `gorm:"size:32"`
	LeaseUntil    *time.Time
	StaffID       uint64
	CreatedAt     time.Time
	UpdatedAt     time.Time
	StartedAt     *time.Time
	FinishedAt    *time.Time
}

// CampaignRecipient is one patient of a campaign: queued (with the
// notification that carries the message, for a subscribe campaign) or
// skipped with the reason; unique per campaign, so nobody is reached
// twice. ConvertedAt and BookingID record an attributed conversion.
type CampaignRecipient struct {
	CampaignID     uint64 `gorm:"primaryKey"`
	PatientID      uint64 `gorm:"primaryKey;index:idx_recipient_patient,priority:1"`
	Variant        string `gorm:"size:1"`
	Skip           string `gorm:"size:16"` // "" when queued
	NotificationID *uint64
	CouponID       *uint64
	// OpenedAt: the patient opened the message (the mini-program page it
	// leads to says so; for a mass send of an article, they read it).
	OpenedAt    *time.Time
	ConvertedAt *time.Time
	BookingID   *uint64
	CreatedAt   time.Time `gorm:"index:idx_recipient_patient,priority:2"`
}
