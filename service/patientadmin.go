package service

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"careloop/model"
)

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// PatientAdmin is what staff do with patients: search, the 360 view,
// blocking. Every read of health data and every change is audited.
type PatientAdmin struct {
	db      *model.DB
	profile *Profile
	family  *Family
	tags    *Tags
	audit   *Audit
	now     func() time.Time
}

// NewPatientAdmin returns the staff-side patient use cases.
func NewPatientAdmin(db *model.DB, profile *Profile, family *Family, tags *Tags, audit *Audit, now func() time.Time) *PatientAdmin {
	if now == nil {
		now = time.Now
	}
	return &PatientAdmin{db: db, profile: profile, family: family, tags: tags, audit: audit, now: now}
}

// SeesFullPhone reports whether a role is shown phone numbers unmasked: the
// front desk calls patients, admins administer; others see them masked.
func SeesFullPhone(role string) bool { return role == model.RoleAdmin || role == model.RoleFrontDesk }

// SeesHealth reports whether a role may read health archives.
func SeesHealth(role string) bool { return role == model.RoleAdmin || role == model.RoleDoctor }

// MaskPhone shows 138****8000.
func MaskPhone(p string) string {
	if len(p) < 7 {
		return p
	}
	return p[:3] + "****" + p[len(p)-4:]
}

// PatientQuery searches patients.
type PatientQuery struct {
	Name  string
	Phone string
	// Q is the front desk's one search box: an ID card, a phone's tail
	// (尾号), a HIS id or the start of a name.
	Q      string
	TagIDs []uint64 // patients carrying every one of these
	Cursor string
	Limit  int
}

// Search finds patients by name (part), phone (exact), the one search box
// and tags. A search that names a person by phone or ID card is audited.
func (s *PatientAdmin) Search(ctx context.Context, by Principal, q PatientQuery) ([]model.Patient, string, error) {
	if err := by.must(ActPatientsRead); err != nil {
		return nil, "", err
	}
	db := s.db.Conn(ctx).Model(&model.Patient{}).Where("patients.erased_at IS NULL")
	if n := strings.TrimSpace(q.Name); n != "" {
		db = db.Where("patients.name LIKE ?"+model.LikeEscapeClause, "%"+model.LikeEscape(n)+"%")
	}
	if ph := strings.TrimSpace(q.Phone); ph != "" {
		db = db.Where("patients.phone_hash = ?", s.profile.sealer.Hash(ph))
	}
	if box := strings.TrimSpace(q.Q); box != "" {
		db = whereIdentity(db, s.profile.sealer, s.now(), box)
	}
	if len(q.TagIDs) > 0 {
		db = db.Where("patients.id IN (?)", s.db.Conn(ctx).Model(&model.PatientTag{}).Select("patient_id").
			Where("tag_id IN ?", q.TagIDs).Group("patient_id").Having("COUNT(*) = ?", len(q.TagIDs)))
	}
	rows, next, err := page(db, "patients.id", q.Cursor, q.Limit, func(p model.Patient) uint64 { return p.ID })
	if err != nil {
		return nil, "", err
	}
	if q.Phone != "" {
		// A search by phone reveals who owns a number: audit it.
		_ = s.audit.Record(ctx, by, AuditPatientSearch, nil, "by phone "+MaskPhone(q.Phone))
	}
	if _, card := idCardHashOf(s.profile.sealer, s.now(), strings.TrimSpace(q.Q)); card {
		_ = s.audit.Record(ctx, by, AuditPatientSearch, nil, "by id card "+model.MaskIDCard(strings.TrimSpace(q.Q)))
	}
	return rows, next, nil
}

// Patient360 is one view of a patient for staff. Later issues add
// bookings, reports, points, surveys, chats and notifications.
type Patient360 struct {
	Patient  model.Patient
	Phone    string // masked unless the role sees full numbers
	IDCard   string // masked unless the role needs the full number (audited)
	Tags     []AssignedTag
	Family   []model.FamilyMember
	Health   *HealthData // nil when the role may not read it
	Consents []ConsentState
	Bookings []model.Booking      // the latest 20
	Reports  []model.Report       // the latest 20; clinical roles only
	Notices  []model.Notification // the latest 20
	// Each of these is there only for the roles whose work it is (nil
	// otherwise): points (points.read), survey answers (surveys.manage),
	// complaints (complaints.handle), conversations without their messages
	// (chat.answer); the latest 20 of each.
	Points        *model.PointsAccount
	Surveys       []model.SurveyResponse
	Complaints    []model.Complaint
	Conversations []model.Conversation
	// RFM is the latest value tier and scores with the tier history (nil
	// when never scored).
	RFM *RFMOf
}

// View loads the 360 of patient id, auditing the read (and, separately, the
// read of the health archive).
func (s *PatientAdmin) View(ctx context.Context, by Principal, id uint64) (*Patient360, error) {
	if err := by.must(ActPatientsRead); err != nil {
		return nil, err
	}
	var out Patient360
	if err := s.db.Conn(ctx).Where("id = ?", id).Take(&out.Patient).Error; err != nil {
		return nil, model.NotFound(err)
	}
	phone := s.profile.Phone(&out.Patient)
	if SeesFullPhone(by.Role) {
		out.Phone = phone
	} else {
		out.Phone = MaskPhone(phone)
	}
	out.IDCard = out.Patient.IDCardMask
	if SeesFullPhone(by.Role) && out.Patient.IDCardEnc != nil {
		// The front desk checks the card at check-in; every such read is audited.
		out.IDCard = s.profile.sealer.IDCardOf(out.Patient.IDCardEnc)
		if err := s.audit.Record(ctx, by, AuditIDCardRead, &id, ""); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	var err error
	if out.Tags, err = s.tags.OfPatient(ctx, id); err != nil {
		return nil, err
	}
	if err = s.db.Conn(ctx).Where("owner_id = ?", id).Order("id").Find(&out.Family).Error; err != nil {
		return nil, err
	}
	if out.Consents, err = s.profile.Consents(ctx, id); err != nil {
		return nil, err
	}
	db := s.db.Conn(ctx)
	if err := db.Where("patient_id = ?", id).Order("date DESC, id DESC").Limit(20).Find(&out.Bookings).Error; err != nil {
		return nil, err
	}
	if err := db.Select("id", "patient_id", "reason", "category", "status", "channel", "due_at", "sent_at", "last_error", "created_at").
		Where("patient_id = ?", id).Order("id DESC").Limit(20).Find(&out.Notices).Error; err != nil {
		return nil, err
	}
	if SeesHealth(by.Role) {
		if err := db.Where("patient_id = ? AND retained_until IS NULL", id).Order("exam_date DESC, id DESC").Limit(20).Find(&out.Reports).Error; err != nil {
			return nil, err
		}
	}
	if err := s.workOf(ctx, by, id, &out); err != nil {
		return nil, err
	}
	if out.RFM, err = rfmOf(ctx, s.db, id); err != nil {
		return nil, err
	}
	if err := s.audit.Record(ctx, by, AuditPatientView, &id, ""); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if SeesHealth(by.Role) {
		h, _, err := s.profile.LoadHealth(ctx, id)
		if err != nil {
			return nil, err
		}
		out.Health = &h
		if err := s.audit.Record(ctx, by, AuditHealthRead, &id, ""); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	return &out, nil
}

// workOf loads into out the parts of the 360 that belong to one kind of
// work, each only for a role that does it.
func (s *PatientAdmin) workOf(ctx context.Context, by Principal, id uint64, out *Patient360) error {
	db := s.db.Conn(ctx)
	if by.May(ActPointsRead) {
		var acc []model.PointsAccount
		if err := db.Where("patient_id = ?", id).Limit(1).Find(&acc).Error; err != nil {
			return fmt.Errorf("points of patient %d: %w", id, err)
		}
		out.Points = &model.PointsAccount{PatientID: id}
		if len(acc) == 1 {
			out.Points = &acc[0]
		}
	}
	if by.May(ActSurveysManage) {
		out.Surveys = []model.SurveyResponse{}
		if err := db.Select("id", "survey_id", "patient_id", "nps", "csat", "comment", "department", "created_at").
			Where("patient_id = ?", id).Order("id DESC").Limit(20).Find(&out.Surveys).Error; err != nil {
			return fmt.Errorf("surveys of patient %d: %w", id, err)
		}
	}
	if by.May(ActComplaintsHandle) {
		out.Complaints = []model.Complaint{}
		if err := db.Where("patient_id = ?", id).Order("id DESC").Limit(20).Find(&out.Complaints).Error; err != nil {
			return fmt.Errorf("complaints of patient %d: %w", id, err)
		}
	}
	if by.May(ActChatAnswer) {
		out.Conversations = []model.Conversation{}
		if err := db.Where("patient_id = ?", id).Order("last_message_at DESC, id DESC").Limit(20).Find(&out.Conversations).Error; err != nil {
			return fmt.Errorf("conversations of patient %d: %w", id, err)
		}
	}
	return nil
}

// SetBlocked blocks (or unblocks) a patient; blocking ends every session.
func (s *PatientAdmin) SetBlocked(ctx context.Context, by Principal, id uint64, blocked bool) error {
	if err := by.must(ActPatientsBlock); err != nil {
		return err
	}
	now := s.now()
	return s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		var val any
		action := AuditPatientUnblock
		if blocked {
			val, action = now, AuditPatientBlock
		}
		res := db.Model(&model.Patient{}).Where("id = ?", id).Update("blocked_at", val)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return model.ErrNotFound
		}
		if blocked {
			if err := revokeSessions(ctx, s.db, model.SubjectPatient, id, now); err != nil {
				return err
			}
		}
		return s.audit.Record(ctx, by, action, &id, "")
	})
}

// Get loads one patient for staff (no audit: no health data in it).
func (s *PatientAdmin) Get(ctx context.Context, id uint64) (*model.Patient, error) {
	var p model.Patient
	if err := s.db.Conn(ctx).Where("id = ?", id).Take(&p).Error; err != nil {
		return nil, fmt.Errorf("load patient %d: %w", id, model.NotFound(err))
	}
	return &p, nil
}
