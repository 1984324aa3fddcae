package service

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/model"
	"careloop/notify"
)

// Get loads a conversation for staff.
func (s *Chat) Get(ctx context.Context, by Principal, id uint64) (*model.Conversation, error) {
	if err := by.must(ActChatAnswer); err != nil {
		return nil, err
	}
	return s.get(ctx, id)
}

func (s *Chat) get(ctx context.Context, id uint64) (*model.Conversation, error) {
	var cv model.Conversation
	err := s.db.Conn(ctx).Where("id = ?", id).Take(&cv).Error
	return &cv, model.NotFound(err)
}

// InboxQuery selects conversations for the doctors' inbox.
type InboxQuery struct {
	Scope     string // all (default), mine, unassigned
	Status    string // open (default), closed, any
	Escalated bool
	Cursor    string
	Limit     int
}

// Inbox lists conversations, the most recently active first, with a cursor
// (last activity and id of the page's last row).
func (s *Chat) Inbox(ctx context.Context, by Principal, q InboxQuery) ([]model.Conversation, string, error) {
	if err := by.must(ActChatAnswer); err != nil {
		return nil, "", err
	}
	db := s.db.Conn(ctx).Model(&model.Conversation{})
	switch q.Scope {
	case "", "all":
	case "mine":
		db = db.Where("doctor_id = ?", by.ID)
	case "unassigned":
		db = db.Where("doctor_id IS NULL")
	default:
		return nil, "", model.ErrInvalid.WithMessage("scope 只能是 all、mine 或 unassigned")
	}
	switch q.Status {
	case "", model.ConversationOpen:
		db = db.Where("status = ?", model.ConversationOpen)
	case model.ConversationClosed:
		db = db.Where("status = ?", model.ConversationClosed)
	case "any":
	default:
		return nil, "", model.ErrInvalid.WithMessage("status 只能是 open、closed 或 any")
	}
	if q.Escalated {
		db = db.Where("escalated_at IS NOT NULL")
	}
	limit := q.Limit
	if limit <= 0 || limit > 100 {
		limit = 20
	}
	if q.Cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		nanos, id, ok := strings.Cut(string(raw), ":")
		n, err2 := strconv.ParseInt(nanos, 10, 64)
		after, err3 := strconv.ParseUint(id, 10, 64)
		if err != nil || !ok || err2 != nil || err3 != nil {
			return nil, "", ErrBadCursor
		}
		at := time.Unix(0, n).UTC()
		db = db.Where("last_message_at < ? OR (last_message_at = ? AND id < ?)", at, at, after)
	}
	var rows []model.Conversation
	if err := db.Order("last_message_at DESC, id DESC").Limit(limit + 1).Find(&rows).Error; err != nil {
		return nil, "", err
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		last := rows[limit-1]
		next = base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%d:%d", last.LastMessageAt.UnixNano(), last.ID)))
	}
	// The list shows each conversation's last message.
	if err := s.audit.Record(ctx, by, "chat.inbox", nil, fmt.Sprintf("scope=%s status=%s: %d conversations", q.Scope, q.Status, len(rows))); err != nil {
		return nil, "", err
	}
	return rows, next, nil
}

// Watch opens a live stream of chat events for a staff member's session;
// who held a stream, and when, is on record (events carry message text).
// done ends it.
func (s *Chat) Watch(ctx context.Context, by Principal) (client *LiveClient, done func(), err error) {
	if err := by.must(ActChatAnswer); err != nil {
		return nil, nil, err
	}
	if err := s.audit.Record(ctx, by, "chat.stream", nil, "live chat stream opened"); err != nil {
		return nil, nil, err
	}
	client, done = s.live.Staff(by.SessionID)
	return client, done, nil
}

// InboxCounts are the numbers beside the inbox's tabs.
type InboxCounts struct {
	Mine           int64 `json:"mine"`
	MineUnread     int64 `json:"mine_unread"`
	Unassigned     int64 `json:"unassigned"`
	All            int64 `json:"all"`
	Escalated      int64 `json:"escalated"`
	UnreadMessages int64 `json:"unread_messages"`
}

// Counts returns the inbox's counts for by, in one query.
func (s *Chat) Counts(ctx context.Context, by Principal) (InboxCounts, error) {
	if err := by.must(ActChatAnswer); err != nil {
		return InboxCounts{}, err
	}
	var c InboxCounts
	err := s.db.Conn(ctx).Model(&model.Conversation{}).Select(`COUNT(*) AS `+"`all`"+`,
		COALESCE(SUM(CASE WHEN doctor_id = ? THEN 1 ELSE 0 END), 0) AS mine,
		COALESCE(SUM(CASE WHEN doctor_id = ? AND staff_unread > 0 THEN 1 ELSE 0 END), 0) AS mine_unread,
		COALESCE(SUM(CASE WHEN doctor_id IS NULL THEN 1 ELSE 0 END), 0) AS unassigned,
		COALESCE(SUM(CASE WHEN escalated_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS escalated,
		COALESCE(SUM(staff_unread), 0) AS unread_messages`, by.ID, by.ID).
		Where("status = ?", model.ConversationOpen).Scan(&c).Error
	return c, err
}

// Reply adds a staff member's reply and sends it to the patient: live and on
// next poll in the mini-program, and through the dispatcher as an
// official-account customer message while WeChat's window allows, else as
// a "your doctor replied" notice. An unassigned conversation becomes the
// replier's.
func (s *Chat) Reply(ctx context.Context, by Principal, conversationID uint64, content string) (*ChatMessage, error) {
	if err := by.must(ActChatAnswer); err != nil {
		return nil, err
	}
	content = strings.TrimSpace(content)
	if content == "" || utf8.RuneCountInString(content) > 1000 {
		return nil, ErrBadMessage
	}
	now := s.now().UTC()
	var cv model.Conversation
	msg := model.ChatMessage{ConversationID: conversationID, Sender: model.SenderStaff, StaffID: by.ID, Kind: "text", Content: content, Channel: "mp", CreatedAt: now}
	name := s.staffNamesByID(ctx, []uint64{by.ID})[by.ID]
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		msg.ID = 0
		if err := s.db.Conn(ctx).Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", conversationID).Take(&cv).Error; err != nil {
			return model.NotFound(err)
		}
		if cv.Status != model.ConversationOpen {
			return ErrConversationClosed
		}
		if err := mayAnswer(by, &cv); err != nil {
			return err
		}
		if err := s.db.Conn(ctx).Create(&msg).Error; err != nil {
			return err
		}
		upd := map[string]any{"awaiting_since": nil, "escalated_at": nil, "staff_unread": 0, "patient_unread": gorm.Expr("patient_unread + 1"),
			"last_message": model.SealText(model.Truncate(content, 60)), "last_message_at": now}
		if cv.DoctorID == nil {
			upd["doctor_id"] = by.ID
			cv.DoctorID = &by.ID
		}
		if err := s.db.Conn(ctx).Model(&model.Conversation{}).Where("id = ?", cv.ID).Updates(upd).Error; err != nil {
			return err
		}
		_, err := s.out.Enqueue(ctx, notify.Notice{PatientID: cv.PatientID, Reason: notify.ReasonDoctorReply, Occurrence: fmt.Sprintf("chat-%d", msg.ID),
			Params: map[string]string{"title": name + "回复了您的咨询", "note": model.Truncate(content, 20), "doctor": name,
				"text": name + "：" + content},
			Page: fmt.Sprintf("pages/chat/detail?id=%d", cv.ID)})
		return err
	})
	if err != nil {
		return nil, err
	}
	out := s.render(&msg, map[uint64]string{by.ID: name})
	s.live.Publish(ctx, ChatEvent{Type: "message", ConversationID: cv.ID, PatientID: cv.PatientID, DoctorID: cv.DoctorID, Message: &out})
	return &out, nil
}

// Claim assigns an unassigned conversation to the calling doctor; when two
// doctors claim at once, one gets it and the other ErrAlreadyAssigned.
func (s *Chat) Claim(ctx context.Context, by Principal, id uint64) (*model.Conversation, error) {
	if err := by.must(ActChatAnswer); err != nil {
		return nil, err
	}
	res := s.db.Conn(ctx).Model(&model.Conversation{}).Where("id = ? AND doctor_id IS NULL AND status = ?", id, model.ConversationOpen).Update("doctor_id", by.ID)
	if res.Error != nil {
		return nil, res.Error
	}
	cv, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if res.RowsAffected == 0 {
		if cv.Status != model.ConversationOpen {
			return nil, ErrConversationClosed
		}
		return nil, ErrAlreadyAssigned
	}
	s.live.Publish(ctx, ChatEvent{Type: "assigned", ConversationID: cv.ID, PatientID: cv.PatientID, DoctorID: cv.DoctorID, StaffOnly: true})
	return cv, nil
}

// TransferRequest moves a conversation to a doctor or a department.
type TransferRequest struct {
	DoctorID   uint64
	Department string
	Note       string
}

// Transfer hands a conversation to another doctor (or the department's
// next doctor on duty); the patient sees a note.
func (s *Chat) Transfer(ctx context.Context, by Principal, id uint64, req TransferRequest) (*model.Conversation, error) {
	if err := by.must(ActChatAnswer); err != nil {
		return nil, err
	}
	if req.DoctorID == 0 && req.Department == "" {
		return nil, model.ErrInvalid.WithMessage("请指定转接的医生或科室")
	}
	var target *uint64
	if req.DoctorID != 0 {
		if err := s.checkDoctor(ctx, req.DoctorID); err != nil {
			return nil, err
		}
		target = &req.DoctorID
	} else {
		t, err := s.nextOnDuty(ctx, req.Department, by.ID)
		if err != nil {
			return nil, err
		}
		target = t // nil: the department's unassigned queue
	}
	var cv model.Conversation
	var note *model.ChatMessage
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", id).Take(&cv).Error; err != nil {
			return model.NotFound(err)
		}
		if cv.Status != model.ConversationOpen {
			return ErrConversationClosed
		}
		if err := mayAnswer(by, &cv); err != nil {
			return err
		}
		upd := map[string]any{"doctor_id": target}
		if req.Department != "" {
			upd["department"] = req.Department
			cv.Department = req.Department
		}
		if err := s.db.Conn(ctx).Model(&model.Conversation{}).Where("id = ?", id).Updates(upd).Error; err != nil {
			return err
		}
		cv.DoctorID = target
		text := "您的咨询已转接"
		if target != nil {
			if name := s.staffNamesByID(ctx, []uint64{*target})[*target]; name != "" {
				text = "您的咨询已转接至" + name + "医生"
			}
		} else if req.Department != "" {
			text = "您的咨询已转至" + req.Department
		}
		var err error
		note, err = s.system(ctx, &cv, text+"，请稍候。")
		if err != nil {
			return err
		}
		pid := cv.PatientID
		return s.audit.Record(ctx, by, "chat.transfer", &pid, fmt.Sprintf("conversation %d to doctor %v department %q: %s", id, ptrVal(target), req.Department, model.Truncate(req.Note, 200)))
	})
	if err != nil {
		return nil, err
	}
	s.live.Publish(ctx, ChatEvent{Type: "assigned", ConversationID: cv.ID, PatientID: cv.PatientID, DoctorID: cv.DoctorID, StaffOnly: true})
	s.live.Publish(ctx, ChatEvent{Type: "message", ConversationID: cv.ID, PatientID: cv.PatientID, DoctorID: cv.DoctorID, Message: s.view(ctx, note)})
	return &cv, nil
}

func ptrVal(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// Close ends a conversation; with survey, the patient is invited to the
// after-chat survey (once per conversation).
func (s *Chat) Close(ctx context.Context, by Principal, id uint64, survey bool) (*model.Conversation, error) {
	if !by.IsPatient() {
		if err := by.must(ActChatAnswer); err != nil {
			return nil, err
		}
	}
	var cv model.Conversation
	var note *model.ChatMessage
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		q := s.db.Conn(ctx).Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", id)
		if by.IsPatient() {
			q = q.Where("patient_id = ?", by.ID)
		}
		if err := q.Take(&cv).Error; err != nil {
			return model.NotFound(err)
		}
		if cv.Status != model.ConversationOpen {
			return ErrConversationClosed
		}
		if !by.IsPatient() {
			if err := mayAnswer(by, &cv); err != nil {
				return err
			}
		}
		now := s.now().UTC()
		if err := s.db.Conn(ctx).Model(&model.Conversation{}).Where("id = ?", id).Updates(map[string]any{
			"status": model.ConversationClosed, "open_key": nil, "closed_at": now, "closed_by": by.ID, "awaiting_since": nil}).Error; err != nil {
			return err
		}
		cv.Status, cv.OpenKey, cv.ClosedAt = model.ConversationClosed, nil, &now
		var err error
		if note, err = s.system(ctx, &cv, "本次咨询已结束，感谢您的信任。如有新的问题，欢迎再次咨询。"); err != nil {
			return err
		}
		if survey && by.IsStaff() {
			return s.surveys.InviteAfter(ctx, model.TriggerAfterChat, cv.PatientID, fmt.Sprintf("chat-%d", cv.ID), cv.Department, ptrVal(cv.DoctorID))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.live.Publish(ctx, ChatEvent{Type: "message", ConversationID: cv.ID, PatientID: cv.PatientID, DoctorID: cv.DoctorID, Message: s.view(ctx, note)})
	s.live.Publish(ctx, ChatEvent{Type: "closed", ConversationID: cv.ID, PatientID: cv.PatientID, DoctorID: cv.DoctorID})
	return &cv, nil
}

// CannedReplies lists the shared replies and the caller's own.
func (s *Chat) CannedReplies(ctx context.Context, by Principal) ([]model.CannedReply, error) {
	if err := by.must(ActChatAnswer); err != nil {
		return nil, err
	}
	var out []model.CannedReply
	return out, s.db.Conn(ctx).Where("staff_id IN ?", []uint64{0, by.ID}).Order("staff_id, id").Find(&out).Error
}

// SaveCannedReply adds a reply: shared (admins only) or the caller's own.
func (s *Chat) SaveCannedReply(ctx context.Context, by Principal, title, content string, shared bool) (*model.CannedReply, error) {
	if err := by.must(ActChatAnswer); err != nil {
		return nil, err
	}
	title, content = strings.TrimSpace(title), strings.TrimSpace(content)
	if title == "" || content == "" || utf8.RuneCountInString(title) > 64 || utf8.RuneCountInString(content) > 1000 {
		return nil, model.ErrInvalid.WithMessage("标题（最多 64 字）和内容（最多 1000 字）不能为空")
	}
	r := model.CannedReply{StaffID: by.ID, Title: title, Content: content}
	if shared {
		if by.Role != model.RoleAdmin {
			return nil, model.ErrForbidden.WithMessage("只有管理员可以添加公共快捷回复")
		}
		r.StaffID = 0
	}
	return &r, s.db.Conn(ctx).Create(&r).Error
}

// DeleteCannedReply removes one of the caller's replies (admins: shared ones too).
func (s *Chat) DeleteCannedReply(ctx context.Context, by Principal, id uint64) error {
	if err := by.must(ActChatAnswer); err != nil {
		return err
	}
	owners := []uint64{by.ID}
	if by.Role == model.RoleAdmin {
		owners = append(owners, 0)
	}
	res := s.db.Conn(ctx).Where("id = ? AND staff_id IN ?", id, owners).Delete(&model.CannedReply{})
	if res.Error == nil && res.RowsAffected == 0 {
		return model.ErrNotFound
	}
	return res.Error
}

// ErrNotYourConversation: a doctor acting on a conversation another doctor
// answers.
var ErrNotYourConversation = model.NewError(model.KindForbidden, "not_your_conversation", "该咨询由其他医生负责，请先由其转接")

// mayAnswer reports whether staff member by may reply to, transfer or
// close cv: its own doctor, any doctor while it is unassigned, an admin.
func mayAnswer(by Principal, cv *model.Conversation) error {
	switch {
	case !by.May(ActChatAnswer):
		return model.ErrForbidden
	case by.Role == model.RoleAdmin:
		return nil
	case by.Role != model.RoleDoctor:
		return model.ErrForbidden
	case cv.DoctorID == nil || *cv.DoctorID == by.ID:
		return nil
	}
	return ErrNotYourConversation
}
