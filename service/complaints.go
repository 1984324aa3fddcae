package service

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"careloop/model"
	"careloop/notify"
)

// Errors of complaints.
var (
	ErrBadComplaint = model.NewError(model.KindRule, "invalid_complaint", "请选择投诉类型并填写内容（10 到 2000 字）")
	ErrBadStep      = model.NewError(model.KindConflict, "invalid_step", "投诉当前状态不允许此操作")
)

var complaintCategories = map[string]bool{"service_attitude": true, "environment": true, "medical_quality": true, "billing": true, "other": true}

// complaintSLA is how long each step may take before it is overdue.
var complaintSLA = map[string]time.Duration{
	model.ComplaintReceived:      24 * time.Hour,
	model.ComplaintAssigned:      24 * time.Hour,
	model.ComplaintInvestigating: 72 * time.Hour,
	model.ComplaintProposed:      24 * time.Hour,
	model.ComplaintApproved:      24 * time.Hour,
}

// Complaints is the complaint workflow.
type Complaints struct {
	db      *model.DB
	out     *notify.Outbox
	surveys *Surveys
	audit   *Audit
	now     func() time.Time
}

// NewComplaints returns the complaint use cases.
func NewComplaints(db *model.DB, out *notify.Outbox, surveys *Surveys, audit *Audit, now func() time.Time) *Complaints {
	if now == nil {
		now = time.Now
	}
	return &Complaints{db: db, out: out, surveys: surveys, audit: audit, now: now}
}

func (s *Complaints) due(status string) *time.Time {
	d, ok := complaintSLA[status]
	if !ok {
		return nil
	}
	t := s.now().Add(d).UTC()
	return &t
}

// File records a patient's complaint.
func (s *Complaints) File(ctx context.Context, p Principal, category, content string) (*model.Complaint, error) {
	content = strings.TrimSpace(content)
	if !complaintCategories[category] || utf8.RuneCountInString(content) < 10 || utf8.RuneCountInString(content) > 2000 {
		return nil, ErrBadComplaint
	}
	c := model.Complaint{PatientID: p.ID, Category: category, Content: content, Status: model.ComplaintReceived, StepDueAt: s.due(model.ComplaintReceived)}
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Create(&c).Error; err != nil {
			return err
		}
		return s.db.Conn(ctx).Create(&model.ComplaintStep{ComplaintID: c.ID, To: model.ComplaintReceived, Note: "患者提交"}).Error
	})
	return &c, err
}

// Mine lists the caller's complaints.
func (s *Complaints) Mine(ctx context.Context, p Principal) ([]model.Complaint, error) {
	var out []model.Complaint
	return out, s.db.Conn(ctx).Where("patient_id = ?", p.ID).Order("id DESC").Find(&out).Error
}

// Get returns a complaint and its steps; patients see only theirs.
func (s *Complaints) Get(ctx context.Context, p Principal, id uint64) (*model.Complaint, []model.ComplaintStep, error) {
	q := s.db.Conn(ctx).Where("id = ?", id)
	if p.IsPatient() {
		q = q.Where("patient_id = ?", p.ID)
	} else if err := p.must(ActComplaintsHandle); err != nil {
		return nil, nil, err
	}
	var c model.Complaint
	if err := q.Take(&c).Error; err != nil {
		return nil, nil, model.NotFound(err)
	}
	var steps []model.ComplaintStep
	err := s.db.Conn(ctx).Where("complaint_id = ?", id).Order("id").Find(&steps).Error
	return &c, steps, err
}

// StepInput is a staff move of a complaint.
type StepInput struct {
	To         string
	Department string
	AssigneeID uint64
	Note       string
	Resolution string
	Reply      string
}

// Advance moves a complaint one step, recording who and when. Replying
// notifies the patient and invites them to the after-complaint survey.
func (s *Complaints) Advance(ctx context.Context, by Principal, id uint64, in StepInput) (*model.Complaint, error) {
	if err := by.must(ActComplaintsHandle); err != nil {
		return nil, err
	}
	var c model.Complaint
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		if err := db.Where("id = ?", id).Take(&c).Error; err != nil {
			return model.NotFound(err)
		}
		if model.ComplaintNext[c.Status] != in.To || in.To == model.ComplaintRated {
			return ErrBadStep
		}
		upd := map[string]any{"status": in.To, "step_due_at": s.due(in.To)}
		switch in.To {
		case model.ComplaintAssigned:
			if strings.TrimSpace(in.Department) == "" {
				return model.ErrInvalid.WithMessage("请指定处理科室")
			}
			upd["department"], upd["assignee_id"] = model.Truncate(in.Department, 30), in.AssigneeID
		case model.ComplaintProposed:
			if strings.TrimSpace(in.Resolution) == "" {
				return model.ErrInvalid.WithMessage("请填写处理方案")
			}
			upd["resolution"] = model.SealText(in.Resolution)
		case model.ComplaintApproved:
			if by.Role != model.RoleAdmin {
				return model.ErrForbidden.WithMessage("处理方案需由管理员审批")
			}
		case model.ComplaintReplied:
			if strings.TrimSpace(in.Reply) == "" {
				return model.ErrInvalid.WithMessage("请填写给患者的回复")
			}
			upd["reply"], upd["resolved_at"] = model.SealText(in.Reply), s.now().UTC()
		}
		q := db.Model(&model.Complaint{}).Where("id = ? AND status = ?", id, c.Status).Updates(upd)
		if q.Error != nil {
			return q.Error
		}
		if q.RowsAffected == 0 {
			return ErrBadStep // moved meanwhile
		}
		if err := db.Create(&model.ComplaintStep{ComplaintID: id, From: c.Status, To: in.To, By: by.ID, Note: model.Truncate(in.Note, 500)}).Error; err != nil {
			return err
		}
		if err := s.audit.Record(ctx, by, "complaint."+in.To, &c.PatientID, fmt.Sprintf("complaint %d", id)); err != nil {
			return err
		}
		if in.To != model.ComplaintReplied {
			return nil
		}
		if _, err := s.out.Enqueue(ctx, notify.Notice{PatientID: c.PatientID, Reason: notify.ReasonComplaintReply,
			Occurrence: fmt.Sprintf("complaint-%d", id), Page: fmt.Sprintf("pages/complaint/detail?id=%d", id),
			Params: map[string]string{"title": "您的投诉已有处理结果", "note": in.Reply}}); err != nil {
			return err
		}
		return s.surveys.InviteAfter(ctx, model.TriggerAfterComplaint, c.PatientID, fmt.Sprintf("complaint-%d", id), c.Department, in.AssigneeID)
	})
	if err != nil {
		return nil, err
	}
	s.out.Wake(ctx)
	return &c, s.db.Conn(ctx).Where("id = ?", id).Take(&c).Error
}

// Rate records the patient's rating of the resolution (once).
func (s *Complaints) Rate(ctx context.Context, p Principal, id uint64, rating int) error {
	if rating < 1 || rating > 5 {
		return model.ErrInvalid.WithMessage("评分为 1 到 5")
	}
	return s.db.InTx(ctx, func(ctx context.Context) error {
		q := s.db.Conn(ctx).Model(&model.Complaint{}).Where("id = ? AND patient_id = ? AND status = ?", id, p.ID, model.ComplaintReplied).
			Updates(map[string]any{"status": model.ComplaintRated, "rating": rating, "step_due_at": nil})
		if q.Error != nil {
			return q.Error
		}
		if q.RowsAffected == 0 {
			if err := model.MustExist(s.db.Conn(ctx).Model(&model.Complaint{}).Where("id = ? AND patient_id = ?", id, p.ID), model.ErrNotFound); err != nil {
				return err
			}
			return ErrBadStep
		}
		return s.db.Conn(ctx).Create(&model.ComplaintStep{ComplaintID: id, From: model.ComplaintReplied, To: model.ComplaintRated,
			Note: fmt.Sprintf("患者评分 %d", rating)}).Error
	})
}

// List lists complaints for staff, newest first a page at a time,
// optionally by status or only overdue.
func (s *Complaints) List(ctx context.Context, by Principal, status string, overdue bool, cursor string, limit int) ([]model.Complaint, string, error) {
	if err := by.must(ActComplaintsHandle); err != nil {
		return nil, "", err
	}
	q := s.db.Conn(ctx).Model(&model.Complaint{})
	if status != "" {
		q = q.Where("status = ?", status)
	}
	if overdue {
		q = q.Where("step_due_at < ?", s.now().UTC())
	}
	return page(q, "id", cursor, limit, func(c model.Complaint) uint64 { return c.ID })
}

// Overdue reports whether the complaint's current step is late.
func (s *Complaints) Overdue(c *model.Complaint) bool {
	return c.StepDueAt != nil && s.now().After(*c.StepDueAt)
}
