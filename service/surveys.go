package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"careloop/model"
	"careloop/notify"
)

// Errors of surveys.
var (
	ErrBadSurvey       = model.NewError(model.KindRule, "invalid_survey", "问卷设置不正确")
	ErrAlreadyAnswered = model.NewError(model.KindConflict, "already_answered", "您已提交过该问卷，感谢您的反馈")
	ErrSurveyExpired   = model.NewError(model.KindRule, "survey_expired", "该问卷已过期")
	ErrBadAnswers      = model.NewError(model.KindRule, "invalid_answers", "答案不完整或不符合题目要求")
)

// Question kinds.
const (
	QRating   = "rating"   // 1–5
	QNPS      = "nps"      // 0–10
	QSingle   = "single"   // one option
	QMultiple = "multiple" // any options
	QText     = "text"
)

// Question is one survey question.
type Question struct {
	ID       string   `json:"id"`
	Kind     string   `json:"kind"`
	Title    string   `json:"title"`
	Options  []string `json:"options,omitempty"`
	Required bool     `json:"required"`
}

// SurveyConfig tunes surveys.
type SurveyConfig struct {
	ValidDays int // how long an invitation can be answered (default 14)
}

// Surveys is satisfaction surveys: definitions, invitations, answers, results.
type Surveys struct {
	db     *model.DB
	out    *notify.Outbox
	points *Points
	cfg    SurveyConfig
	now    func() time.Time
	// rules supplies the delay after a checkup.
	care *CareRules
}

// NewSurveys returns the survey use cases.
//
// A completed checkup invites its patient (Events.OnBookingCompleted).
func NewSurveys(db *model.DB, out *notify.Outbox, points *Points, care *CareRules, events *Events, cfg SurveyConfig, now func() time.Time) *Surveys {
	if cfg.ValidDays == 0 {
		cfg.ValidDays = 14
	}
	if now == nil {
		now = time.Now
	}
	s := &Surveys{db: db, out: out, points: points, cfg: cfg, now: now, care: care}
	events.OnBookingCompleted(s.InviteForBooking)
	return s
}

func checkQuestions(qs []Question) error {
	if len(qs) == 0 || len(qs) > 50 {
		return ErrBadSurvey
	}
	seen := map[string]bool{}
	for _, q := range qs {
		if q.ID == "" || seen[q.ID] || strings.TrimSpace(q.Title) == "" {
			return ErrBadSurvey
		}
		seen[q.ID] = true
		switch q.Kind {
		case QRating, QNPS, QText:
		case QSingle, QMultiple:
			if len(q.Options) < 2 {
				return ErrBadSurvey
			}
		default:
			return ErrBadSurvey
		}
	}
	return nil
}

// Define adds a version of the survey code (the first one creates it) and
// makes it the active one.
func (s *Surveys) Define(ctx context.Context, by Principal, code, name, trigger string, qs []Question) (*model.Survey, error) {
	if err := by.must(ActSurveysManage); err != nil {
		return nil, err
	}
	code = strings.TrimSpace(code)
	if code == "" || strings.TrimSpace(name) == "" {
		return nil, ErrBadSurvey
	}
	switch trigger {
	case model.TriggerAfterCheckup, model.TriggerAfterChat, model.TriggerAfterComplaint:
	default:
		return nil, ErrBadSurvey
	}
	if err := checkQuestions(qs); err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(qs)
	var sv model.Survey
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		var last model.Survey
		version := 1
		if err := db.Where("code = ?", code).Order("version DESC").Take(&last).Error; err == nil {
			version = last.Version + 1
		}
		// One active survey per trigger.
		if err := db.Model(&model.Survey{}).Where("survey_trigger = ? OR code = ?", trigger, code).Update("active", false).Error; err != nil {
			return err
		}
		sv = model.Survey{Code: code, Version: version, Name: model.Truncate(name, 60), Trigger: trigger, Questions: string(raw), Active: true}
		return db.Create(&sv).Error
	})
	if err != nil {
		return nil, err
	}
	return &sv, nil
}

// Questions decodes a survey's questions.
func (s *Surveys) Questions(sv *model.Survey) []Question {
	var qs []Question
	_ = json.Unmarshal([]byte(sv.Questions), &qs)
	return qs
}

// InviteForBooking invites the patient to the active after-checkup survey
// (once per booking), with the notice due after the configured delay. It
// joins the completing transaction.
func (s *Surveys) InviteForBooking(ctx context.Context, b *model.Booking) error {
	var sv model.Survey
	err := s.db.Conn(ctx).Where("survey_trigger = ? AND active = ?", model.TriggerAfterCheckup, true).Take(&sv).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil // no survey defined: nothing to ask
	}
	if err != nil {
		return err
	}
	pkg := b.PackageID
	inv := model.SurveyInvite{SurveyID: sv.ID, PatientID: b.PatientID, Occurrence: fmt.Sprintf("booking-%d", b.ID), BookingID: &b.ID,
		PackageID: &pkg, ExpiresAt: s.now().AddDate(0, 0, s.cfg.ValidDays).UTC()}
	if err := s.db.Conn(ctx).Create(&inv).Error; err != nil {
		if model.IsDuplicate(err) {
			return nil
		}
		return err
	}
	delay := time.Duration(s.care.Current(ctx).SurveyDelayHours) * time.Hour
	_, err = s.out.Enqueue(ctx, notify.Notice{PatientID: b.PatientID, Reason: notify.ReasonSurveyInvite,
		Occurrence: fmt.Sprintf("invite-%d", inv.ID), DueAt: s.now().Add(delay),
		Params: map[string]string{"title": sv.Name, "note": "您的评价帮助我们做得更好"},
		Page:   fmt.Sprintf("pages/survey/answer?invite=%d", inv.ID)})
	return err
}

// InviteView is an invitation with its questions.
type InviteView struct {
	Invite    model.SurveyInvite
	Survey    model.Survey
	Questions []Question
}

// Pending lists the caller's unanswered, unexpired invitations.
func (s *Surveys) Pending(ctx context.Context, p Principal) ([]model.SurveyInvite, error) {
	var out []model.SurveyInvite
	err := s.db.Conn(ctx).Where("patient_id = ? AND answered_at IS NULL AND expires_at > ?", p.ID, s.now().UTC()).Order("id DESC").Find(&out).Error
	return out, err
}

// Invite returns one of the caller's invitations with its questions.
func (s *Surveys) Invite(ctx context.Context, p Principal, id uint64) (*InviteView, error) {
	var v InviteView
	if err := s.db.Conn(ctx).Where("id = ? AND patient_id = ?", id, p.ID).Take(&v.Invite).Error; err != nil {
		return nil, model.NotFound(err)
	}
	if err := s.db.Conn(ctx).Where("id = ?", v.Invite.SurveyID).Take(&v.Survey).Error; err != nil {
		return nil, err
	}
	v.Questions = s.Questions(&v.Survey)
	return &v, nil
}

// Answer records the one answer to an invitation, earns the survey points,
// and opens a follow-up task on a low score (rating ≤ 2 or NPS ≤ 6).
func (s *Surveys) Answer(ctx context.Context, p Principal, id uint64, answers map[string]any) (*model.SurveyResponse, error) {
	v, err := s.Invite(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if v.Invite.AnsweredAt != nil {
		return nil, ErrAlreadyAnswered
	}
	if !s.now().Before(v.Invite.ExpiresAt) {
		return nil, ErrSurveyExpired
	}
	resp := model.SurveyResponse{InviteID: id, SurveyID: v.Survey.ID, PatientID: p.ID, PackageID: v.Invite.PackageID,
		DoctorID: v.Invite.DoctorID, Department: v.Invite.Department}
	low := false
	var ratings []float64
	for _, q := range v.Questions {
		a, given := answers[q.ID]
		if !given || a == nil {
			if q.Required {
				return nil, ErrBadAnswers.WithMessage("请回答：%s", q.Title)
			}
			continue
		}
		switch q.Kind {
		case QRating, QNPS:
			f, ok := a.(float64)
			lo, hi := 1.0, 5.0
			if q.Kind == QNPS {
				lo, hi = 0, 10
			}
			if !ok || f != float64(int(f)) || f < lo || f > hi {
				return nil, ErrBadAnswers.WithMessage("评分超出范围：%s", q.Title)
			}
			if q.Kind == QNPS {
				n := int(f)
				resp.NPS = &n
				low = low || n <= 6
			} else {
				ratings = append(ratings, f)
				low = low || f <= 2
			}
		case QSingle:
			str, ok := a.(string)
			if !ok || !contains(q.Options, str) {
				return nil, ErrBadAnswers.WithMessage("请选择一个选项：%s", q.Title)
			}
		case QMultiple:
			list, ok := a.([]any)
			if !ok {
				return nil, ErrBadAnswers.WithMessage("请选择选项：%s", q.Title)
			}
			for _, x := range list {
				if str, ok := x.(string); !ok || !contains(q.Options, str) {
					return nil, ErrBadAnswers.WithMessage("选项无效：%s", q.Title)
				}
			}
		case QText:
			str, ok := a.(string)
			if !ok || utf8.RuneCountInString(str) > 1000 {
				return nil, ErrBadAnswers.WithMessage("文字过长：%s", q.Title)
			}
			if resp.Comment == "" {
				resp.Comment = strings.TrimSpace(str)
			}
		}
	}
	if len(ratings) > 0 {
		sum := 0.0
		for _, r := range ratings {
			sum += r
		}
		avg := sum / float64(len(ratings))
		resp.CSAT = &avg
	}
	raw, _ := json.Marshal(answers)
	resp.Answers = string(raw)
	now := s.now().UTC()
	err = s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		// The conditional update decides who answers: once, whatever races.
		q := db.Model(&model.SurveyInvite{}).Where("id = ? AND patient_id = ? AND answered_at IS NULL", id, p.ID).Update("answered_at", now)
		if q.Error != nil {
			return q.Error
		}
		if q.RowsAffected == 0 {
			return ErrAlreadyAnswered
		}
		if err := db.Create(&resp).Error; err != nil {
			if model.IsDuplicate(err) {
				return ErrAlreadyAnswered
			}
			return err
		}
		if s.points != nil {
			if err := s.points.EarnForSurvey(ctx, p.ID, resp.ID); err != nil {
				return err
			}
		}
		if !low {
			return nil
		}
		return db.Create(&model.Task{Kind: "follow_up", Role: model.RoleMarketing, PatientID: p.ID,
			Note: model.Truncate(fmt.Sprintf("满意度低分回访（问卷 %s）：%s", v.Survey.Name, resp.Comment), 500), Status: "open"}).Error
	})
	if err != nil {
		return nil, err
	}
	return &resp, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ResultFilter narrows survey results.
type ResultFilter struct {
	SurveyCode string
	From, To   time.Time
	PackageID  uint64
	DoctorID   uint64
	Department string
}

// Results are a survey's numbers for a period.
type Results struct {
	Responses  int
	NPS        *float64 // promoters% − detractors%
	CSAT       *float64 // mean rating (1–5)
	Promoters  int
	Passives   int
	Detractors int
	Comments   []string
	ByPackage  map[uint64]int
	// ByMonth is the same per calendar month (Asia/Shanghai), oldest first.
	ByMonth []MonthResult
}

// MonthResult is one month's responses, NPS and CSAT.
type MonthResult struct {
	Month     string   `json:"month"` // 2026-11
	Responses int      `json:"responses"`
	NPS       *float64 `json:"nps"`
	CSAT      *float64 `json:"csat"`
}

// scores accumulates NPS and CSAT answers.
type scores struct {
	responses, promoters, passives, detractors, npsN, csatN int
	csatSum                                                 float64
}

func (sc *scores) add(r *model.SurveyResponse) {
	sc.responses++
	if r.NPS != nil {
		sc.npsN++
		switch {
		case *r.NPS >= 9:
			sc.promoters++
		case *r.NPS >= 7:
			sc.passives++
		default:
			sc.detractors++
		}
	}
	if r.CSAT != nil {
		sc.csatSum += *r.CSAT
		sc.csatN++
	}
}

// nps is promoters% − detractors%, nil without answers.
func (sc *scores) nps() *float64 {
	if sc.npsN == 0 {
		return nil
	}
	v := float64(sc.promoters-sc.detractors) * 100 / float64(sc.npsN)
	return &v
}

// csat is the mean rating, nil without answers.
func (sc *scores) csat() *float64 {
	if sc.csatN == 0 {
		return nil
	}
	v := sc.csatSum / float64(sc.csatN)
	return &v
}

// Results computes NPS and CSAT over the responses the filter selects.
func (s *Surveys) Results(ctx context.Context, by Principal, f ResultFilter) (*Results, error) {
	if err := by.must(ActSurveysManage); err != nil {
		return nil, err
	}
	q := s.db.Conn(ctx).Model(&model.SurveyResponse{})
	if f.SurveyCode != "" {
		q = q.Where("survey_id IN (?)", s.db.Conn(ctx).Model(&model.Survey{}).Select("id").Where("code = ?", f.SurveyCode))
	}
	if !f.From.IsZero() {
		q = q.Where("created_at >= ?", f.From.UTC())
	}
	if !f.To.IsZero() {
		q = q.Where("created_at < ?", f.To.UTC())
	}
	if f.PackageID != 0 {
		q = q.Where("package_id = ?", f.PackageID)
	}
	if f.DoctorID != 0 {
		q = q.Where("doctor_id = ?", f.DoctorID)
	}
	if f.Department != "" {
		q = q.Where("department = ?", f.Department)
	}
	var rows []model.SurveyResponse
	if err := q.Order("id").Limit(100000).Find(&rows).Error; err != nil {
		return nil, err
	}
	out := &Results{Responses: len(rows), Comments: []string{}, ByPackage: map[uint64]int{}, ByMonth: []MonthResult{}}
	var all scores
	months := map[string]*scores{}
	for i := range rows {
		r := &rows[i]
		all.add(r)
		m := r.CreatedAt.In(model.Shanghai).Format("2006-01")
		if months[m] == nil {
			months[m] = &scores{}
		}
		months[m].add(r)
		if r.Comment != "" && len(out.Comments) < 200 {
			out.Comments = append(out.Comments, r.Comment)
		}
		if r.PackageID != nil {
			out.ByPackage[*r.PackageID]++
		}
	}
	out.Promoters, out.Passives, out.Detractors = all.promoters, all.passives, all.detractors
	out.NPS, out.CSAT = all.nps(), all.csat()
	for _, m := range slices.Sorted(maps.Keys(months)) {
		sc := months[m]
		out.ByMonth = append(out.ByMonth, MonthResult{Month: m, Responses: sc.responses, NPS: sc.nps(), CSAT: sc.csat()})
	}
	return out, nil
}

// List lists survey versions, newest first.
func (s *Surveys) List(ctx context.Context, by Principal) ([]model.Survey, error) {
	if err := by.must(ActSurveysManage); err != nil {
		return nil, err
	}
	var out []model.Survey
	return out, s.db.Conn(ctx).Order("id DESC").Limit(200).Find(&out).Error
}

// InviteAfter invites a patient to the active survey of a trigger (after a
// chat, after a complaint), once per occurrence, in the caller's transaction.
func (s *Surveys) InviteAfter(ctx context.Context, trigger string, patientID uint64, occurrence, department string, staffID uint64) error {
	var sv model.Survey
	err := s.db.Conn(ctx).Where("survey_trigger = ? AND active = ?", trigger, true).Take(&sv).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	inv := model.SurveyInvite{SurveyID: sv.ID, PatientID: patientID, Occurrence: occurrence, Department: department, DoctorID: staffID,
		ExpiresAt: s.now().AddDate(0, 0, s.cfg.ValidDays).UTC()}
	if err := s.db.Conn(ctx).Create(&inv).Error; err != nil {
		if model.IsDuplicate(err) {
			return nil
		}
		return err
	}
	_, err = s.out.Enqueue(ctx, notify.Notice{PatientID: patientID, Reason: notify.ReasonSurveyInvite, Occurrence: fmt.Sprintf("invite-%d", inv.ID),
		Params: map[string]string{"title": sv.Name, "note": "请对本次处理进行评价"}, Page: fmt.Sprintf("pages/survey/answer?invite=%d", inv.ID)})
	return err
}
