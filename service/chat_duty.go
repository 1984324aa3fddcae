package service

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/model"
)

func (s *Chat) checkDoctor(ctx context.Context, id uint64) error {
	var st model.Staff
	err := s.db.Conn(ctx).Where("id = ? AND role = ? AND disabled_at IS NULL", id, model.RoleDoctor).Take(&st).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return ErrNotDoctor
	}
	return err
}

// route picks who answers: the chosen doctor, else an on-duty doctor of the
// department, else any on-duty doctor, in turn (the fewest conversations
// routed so far first); nil when nobody is on duty. exclude is skipped.
func (s *Chat) route(ctx context.Context, department string, chosen *uint64, exclude uint64) (*uint64, error) {
	if chosen != nil {
		return chosen, nil
	}
	if department != "" {
		if id, err := s.nextOnDuty(ctx, department, exclude); err != nil || id != nil {
			return id, err
		}
	}
	return s.nextOnDuty(ctx, "", exclude)
}

func (s *Chat) nextOnDuty(ctx context.Context, department string, exclude uint64) (*uint64, error) {
	for attempt := 0; attempt < 20; attempt++ {
		q := s.db.Conn(ctx).Table("doctor_duties d").Select("d.staff_id, d.assigned").
			Joins("JOIN staffs st ON st.id = d.staff_id AND st.role = ? AND st.disabled_at IS NULL", model.RoleDoctor).
			Where("d.on_duty = ? AND d.staff_id <> ?", true, exclude).Order("d.assigned, d.staff_id").Limit(1)
		if department != "" {
			q = q.Where("d.department = ?", department)
		}
		var pick struct {
			StaffID  uint64
			Assigned uint64
		}
		if err := q.Scan(&pick).Error; err != nil {
			return nil, err
		}
		if pick.StaffID == 0 {
			return nil, nil
		}
		// Another routing may have taken this turn: the count decides.
		res := s.db.Conn(ctx).Model(&model.DoctorDuty{}).Where("staff_id = ? AND assigned = ?", pick.StaffID, pick.Assigned).
			Updates(map[string]any{"assigned": gorm.Expr("assigned + 1")})
		if res.Error != nil {
			return nil, res.Error
		}
		if res.RowsAffected == 1 {
			return &pick.StaffID, nil
		}
	}
	return nil, nil // heavy contention: leave it unassigned, the inbox shows it
}

// Escalate flags conversations left unanswered longer than the configured
// time (counted only while doctors are at work), opens a task for the
// admins, and moves those whose doctor is off duty to a doctor on duty.
// Run every minute by the scheduler; concurrent runs escalate each once.
func (s *Chat) Escalate(ctx context.Context, now time.Time) error {
	cs := s.Settings(ctx)
	if !cs.Open(now) {
		return nil
	}
	limit := now.Add(-time.Duration(cs.EscalateAfterMinutes) * time.Minute).UTC()
	var due []model.Conversation
	if err := s.db.Conn(ctx).Where("status = ? AND escalated_at IS NULL AND awaiting_since < ?", model.ConversationOpen, limit).
		Limit(500).Find(&due).Error; err != nil {
		return err
	}
	for i := range due {
		cv := &due[i]
		escalated := false
		err := s.db.InTx(ctx, func(ctx context.Context) error {
			res := s.db.Conn(ctx).Model(&model.Conversation{}).Where("id = ? AND escalated_at IS NULL AND awaiting_since IS NOT NULL", cv.ID).Update("escalated_at", now.UTC())
			if res.Error != nil || res.RowsAffected == 0 {
				return res.Error
			}
			escalated = true
			mins := int(now.Sub(*cv.AwaitingSince).Minutes())
			return s.db.Conn(ctx).Create(&model.Task{Kind: "chat_escalation", Role: model.RoleAdmin, PatientID: cv.PatientID, Status: "open",
				Note: fmt.Sprintf("在线咨询 #%d（%s）已 %d 分钟未回复", cv.ID, cv.Topic, mins)}).Error
		})
		if err != nil {
			return err
		}
		if !escalated {
			continue
		}
		switch {
		case cv.DoctorID == nil: // nobody was on duty when it came in
			if next, err := s.route(ctx, cv.Department, nil, 0); err == nil && next != nil {
				if res := s.db.Conn(ctx).Model(&model.Conversation{}).Where("id = ? AND doctor_id IS NULL", cv.ID).Update("doctor_id", *next); res.RowsAffected == 1 {
					cv.DoctorID = next
				}
			}
		case !s.onDuty(ctx, *cv.DoctorID): // (a failed lookup counts as on duty: nothing moves)
			if next, err := s.route(ctx, cv.Department, nil, *cv.DoctorID); err == nil && next != nil {
				if res := s.db.Conn(ctx).Model(&model.Conversation{}).Where("id = ? AND doctor_id = ?", cv.ID, *cv.DoctorID).Update("doctor_id", *next); res.RowsAffected == 1 {
					cv.DoctorID = next
				}
			}
		}
		s.live.Publish(ctx, ChatEvent{Type: "escalated", ConversationID: cv.ID, PatientID: cv.PatientID, DoctorID: cv.DoctorID, StaffOnly: true})
	}
	return nil
}

func (s *Chat) onDuty(ctx context.Context, staffID uint64) bool {
	n, err := model.Count(s.db.Conn(ctx).Model(&model.DoctorDuty{}).Where("staff_id = ? AND on_duty = ?", staffID, true))
	if err != nil {
		s.log.Warn("chat: is the doctor on duty", "staff", staffID, "err", err)
		return true
	}
	return n > 0
}

// Doctor is a doctor as routing and patients see them.
type Doctor struct {
	ID         uint64 `json:"id"`
	Name       string `json:"name"`
	Department string `json:"department"`
	OnDuty     bool   `json:"on_duty"`
}

// Doctors lists the active doctors with their duty.
func (s *Chat) Doctors(ctx context.Context) ([]Doctor, error) {
	var out []Doctor
	err := s.db.Conn(ctx).Table("staffs st").
		Select("st.id, CASE WHEN st.name = '' THEN st.username ELSE st.name END AS name, COALESCE(d.department, '') AS department, COALESCE(d.on_duty, ?) AS on_duty", false).
		Joins("LEFT JOIN doctor_duties d ON d.staff_id = st.id").
		Where("st.role = ? AND st.disabled_at IS NULL", model.RoleDoctor).Order("st.id").Scan(&out).Error
	return out, err
}

// SetDuty records a doctor's department and whether they are on duty. A
// doctor coming on duty joins the rotation at the current minimum, so they
// do not get every new conversation until they have caught up.
//
// A doctor sets their own duty; another's is set by those who may
// (ActChatDutyOthers).
func (s *Chat) SetDuty(ctx context.Context, by Principal, staffID uint64, department string, onDuty bool) error {
	act := ActChatDutyOthers
	if staffID == by.ID {
		act = ActChatAnswer
	}
	if err := by.must(act); err != nil {
		return err
	}
	if err := s.checkDoctor(ctx, staffID); err != nil {
		return err
	}
	if utf8.RuneCountInString(department) > 64 {
		return model.ErrInvalid.WithMessage("科室名称最多 64 字")
	}
	var floor struct{ Min *uint64 }
	if err := s.db.Conn(ctx).Model(&model.DoctorDuty{}).Select("MIN(assigned) AS min").Where("on_duty = ? AND staff_id <> ?", true, staffID).Scan(&floor).Error; err != nil {
		return err
	}
	d := model.DoctorDuty{StaffID: staffID, Department: department, OnDuty: onDuty, UpdatedAt: s.now()}
	if onDuty && floor.Min != nil {
		d.Assigned = *floor.Min
	}
	cols := []string{"department", "on_duty", "updated_at"}
	var cur model.DoctorDuty
	if err := s.db.Conn(ctx).Where("staff_id = ?", staffID).Take(&cur).Error; err == nil && onDuty && !cur.OnDuty {
		cols = append(cols, "assigned")
	}
	return s.db.Conn(ctx).Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "staff_id"}}, DoUpdates: clause.AssignmentColumns(cols)}).Create(&d).Error
}
