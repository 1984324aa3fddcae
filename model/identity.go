package model

import "time"

// Patient is a person we serve: found by their mini-program openid, their
// phone, or the hospital's HIS id. Phone and health data are stored
// encrypted; PhoneHash is a keyed hash for lookups.
type Patient struct {
	ID        uint64  `gorm:"primaryKey"`
	OpenID    *string `gorm:"size:64;uniqueIndex"`
	UnionID   *string `gorm:"size:64;index"`
	HISID     *string `gorm:"column:his_id;size:64;uniqueIndex"`
	PhoneHash *string `gorm:"size:64;uniqueIndex"`
	PhoneEnc  []byte  `gorm:"type:blob"`
	// PhoneTail is the phone's last four digits (尾号), for the front desk's
	// search; not enough to identify anyone.
	PhoneTail string `gorm:"size:4;index"`
	Name      string `gorm:"size:64"`
	Gender    string `gorm:"size:8;default:unknown"` // male, female, unknown
	BirthDate *time.Time
	// IDCardHash (keyed hash, for lookups), IDCardEnc (sealed) and
	// IDCardMask (1101**********1234, what most people see) hold the ID
	// card (身份证); birth date and gender agree with it.
	IDCardHash *string `gorm:"size:64;uniqueIndex"`
	IDCardEnc  []byte  `gorm:"type:blob"`
	IDCardMask string  `gorm:"size:18"`
	// RegionCode is the GB/T 2260 county code (from the ID card, or chosen);
	// Region is its name (older records: what the patient typed).
	RegionCode string `gorm:"size:6;index"`
	Region     string `gorm:"size:128"`
	// Source is the first touch: a QR scene, a campaign, a referral.
	Source    string `gorm:"size:128"`
	BlockedAt *time.Time
	// ErasedAt is set when the patient asked for deletion: personal data is
	// gone and the row stays only so that ledgers keep their reference.
	ErasedAt *time.Time
	// RetainedEnc is, after erasure, the sealed identity (name, phone, ID
	// card, HIS id, birth date) the retained medical records belong to,
	// kept until RetainedUntil only to answer a legal request.
	RetainedEnc   []byte `gorm:"type:blob"`
	RetainedUntil *time.Time
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

// Tail is the last four digits of a phone number.
func Tail(phone string) string {
	if len(phone) < 4 {
		return ""
	}
	return phone[len(phone)-4:]
}

// Staff roles.
const (
	RoleAdmin     = "admin"
	RoleMarketing = "marketing"
	RoleDoctor    = "doctor"
	RoleFrontDesk = "frontdesk"
)

// ValidRole reports whether r is a staff role.
func ValidRole(r string) bool {
	switch r {
	case RoleAdmin, RoleMarketing, RoleDoctor, RoleFrontDesk:
		return true
	}
	return false
}

// Staff is a hospital employee using the admin API.
type Staff struct {
	ID           uint64 `gorm:"primaryKey"`
	Username     string `gorm:"size:64;uniqueIndex"`
	PasswordHash string `gorm:"size:255"`
	Name         string `gorm:"size:64"`
	Role         string `gorm:"size:16;index"`
	DisabledAt   *time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
}

// DisplayName is how people see a staff member: their name, else the
// username.
func (s *Staff) DisplayName() string {
	if s.Name != "" {
		return s.Name
	}
	return s.Username
}

// Subject kinds of a session.
const (
	SubjectPatient = "patient"
	SubjectStaff   = "staff"
)

// Session backs one bearer token, so that a token can be revoked before it
// expires (logout, a blocked patient, a disabled staff account).
type Session struct {
	ID        string `gorm:"primaryKey;size:32"`
	Subject   string `gorm:"size:8;index:idx_session_subject,priority:1"`
	SubjectID uint64 `gorm:"index:idx_session_subject,priority:2"`
	ExpiresAt time.Time
	RevokedAt *time.Time
	CreatedAt time.Time
}

// Active reports whether the session may still be used at now.
func (s *Session) Active(now time.Time) bool {
	return s.RevokedAt == nil && now.Before(s.ExpiresAt)
}

// AllModels lists every table, for migrations.
func AllModels() []any {
	return []any{&Patient{}, &Staff{}, &Session{}, &HealthArchive{}, &FamilyMember{}, &Consent{}, &Tag{}, &PatientTag{}, &AuditLog{},
		&Notification{}, &SubscribeCredit{}, &Follower{}, &NotifyPreference{}, &Setting{},
		&Package{}, &Slot{}, &Booking{}, &ClosedDay{},
		&Report{}, &ReportVersion{}, &Task{},
		&Level{}, &PointsAccount{}, &PointsEntry{}, &Reward{}, &Coupon{},
		&Survey{}, &SurveyInvite{}, &SurveyResponse{}, &Complaint{}, &ComplaintStep{},
		&OAEvent{}, &AutoReply{},
		&Conversation{}, &ChatMessage{}, &ChatUpload{}, &DoctorDuty{}, &CannedReply{}, &FileChunk{},
		&ImportJob{},
		&Article{}, &ArticlePublication{}, &MediaFile{}, &WxImage{}, &ArticleRead{}, &ArticleShare{},
		&MassSend{}, &MassBatch{}, &MassReceipt{}, &WxDraft{}, &MassJobResult{},
		&Channel{}, &ChannelScan{},
		&WxTag{}, &WxTagMember{},
		&RFMRun{}, &RFMScore{},
		&Segment{}, &ComputedTag{}, &HealthMark{},
		&Campaign{}, &CampaignRecipient{}, &PatientVisit{}}
}
