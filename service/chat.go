package service

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"careloop/model"
	"careloop/notify"
)

// Chat errors a client can act on.
var (
	ErrConversationClosed = model.NewError(model.KindConflict, "conversation_closed", "该咨询已结束，请发起新的咨询")
	ErrAlreadyAssigned    = model.NewError(model.KindConflict, "already_assigned", "该咨询已由其他医生接诊")
	ErrNotDoctor          = model.NewError(model.KindRule, "not_a_doctor", "所选人员不是可接诊的医生")
	ErrBadMessage         = model.NewError(model.KindInvalid, "invalid_message", "消息内容不能为空，文字最多 1000 字")
	ErrBadTopic           = model.NewError(model.KindInvalid, "invalid_topic", "咨询主题最多 32 字")
)

// DefaultTopic is the topic of a conversation started without one (and of
// every official-account message).
const DefaultTopic = "在线咨询"

// Chat is the doctor chat (在线咨询): conversations, routing, the inbox,
// replies and their delivery, escalation.
type Chat struct {
	db        *model.DB
	out       *notify.Outbox
	surveys   *Surveys
	audit     *Audit
	live      *Live
	files     FileStore
	limiter   KV
	log       *slog.Logger
	now       func() time.Time
	cache     ttlCache
	followers *Followers
}

// NewChat returns the chat use cases.
func NewChat(db *model.DB, out *notify.Outbox, surveys *Surveys, audit *Audit, live *Live, files FileStore, limiter KV, followers *Followers, log *slog.Logger, now func() time.Time) *Chat {
	if now == nil {
		now = time.Now
	}
	return &Chat{db: db, out: out, surveys: surveys, audit: audit, live: live, files: files, limiter: limiter, followers: followers, log: log, now: now}
}

// MessagesPerMinute is how many messages a patient may send a minute.
const MessagesPerMinute = 20

// ErrChatTooFast refuses a patient sending faster than a person types.
var ErrChatTooFast = model.NewError(model.KindTooMany, "rate_limited", "发送太频繁，请稍后再试")

// SetClock replaces the chat's clock (tests move it across working hours).
func (s *Chat) SetClock(now func() time.Time) { s.now = now }

// Live is the fan-out the handlers connect clients to.
func (s *Chat) Live() *Live { return s.live }

// Messages returns a conversation's messages after afterID (oldest first)
// and marks them read by the reader's side. Staff reads are audited.
func (s *Chat) Messages(ctx context.Context, by Principal, conversationID, afterID uint64, limit int) (*model.Conversation, []ChatMessage, error) {
	var cv *model.Conversation
	var err error
	if by.IsPatient() {
		cv, err = s.mine(ctx, by, conversationID)
	} else if err = by.must(ActChatAnswer); err == nil {
		cv, err = s.get(ctx, conversationID)
	}
	if err != nil {
		return nil, nil, err
	}
	if limit <= 0 || limit > 200 {
		limit = 200
	}
	var rows []model.ChatMessage
	if err := s.db.Conn(ctx).Where("conversation_id = ? AND id > ?", cv.ID, afterID).Order("id").Limit(limit).Find(&rows).Error; err != nil {
		return nil, nil, err
	}
	out := make([]ChatMessage, 0, len(rows))
	names := s.staffNames(ctx, rows)
	for i := range rows {
		out = append(out, s.render(&rows[i], names))
	}
	if by.IsPatient() {
		if cv.PatientUnread > 0 {
			if err := s.db.Conn(ctx).Model(&model.Conversation{}).Where("id = ?", cv.ID).Update("patient_unread", 0).Error; err != nil {
				return nil, nil, fmt.Errorf("mark conversation %d read: %w", cv.ID, err)
			}
		}
		return cv, out, nil
	}
	pid := cv.PatientID
	if err := s.audit.Record(ctx, by, "chat.read", &pid, fmt.Sprintf("conversation %d", cv.ID)); err != nil {
		return nil, nil, err
	}
	if cv.StaffUnread > 0 && (cv.DoctorID == nil || *cv.DoctorID == by.ID) {
		if err := s.db.Conn(ctx).Model(&model.Conversation{}).Where("id = ?", cv.ID).Update("staff_unread", 0).Error; err != nil {
			return nil, nil, fmt.Errorf("mark conversation %d read: %w", cv.ID, err)
		}
		s.live.Publish(ctx, ChatEvent{Type: "read", ConversationID: cv.ID, PatientID: cv.PatientID, DoctorID: cv.DoctorID, StaffOnly: true})
	}
	return cv, out, nil
}

func (s *Chat) staffNames(ctx context.Context, rows []model.ChatMessage) map[uint64]string {
	var ids []uint64
	for _, r := range rows {
		if r.StaffID != 0 {
			ids = append(ids, r.StaffID)
		}
	}
	return s.staffNamesByID(ctx, ids)
}

// staffNamesByID returns the display names of staff members, in one query.
func (s *Chat) staffNamesByID(ctx context.Context, ids []uint64) map[uint64]string {
	names := map[uint64]string{}
	if len(ids) == 0 {
		return names
	}
	var staff []model.Staff
	if err := s.db.Conn(ctx).Select("id", "name", "username").Where("id IN ?", ids).Find(&staff).Error; err != nil {
		// Names only label what is shown: without them it still shows.
		s.log.Warn("chat: staff names", "err", err)
	}
	for _, st := range staff {
		names[st.ID] = st.DisplayName()
	}
	return names
}

func (s *Chat) view(ctx context.Context, m *model.ChatMessage) *ChatMessage {
	out := s.render(m, s.staffNames(ctx, []model.ChatMessage{*m}))
	return &out
}

func (s *Chat) render(m *model.ChatMessage, names map[uint64]string) ChatMessage {
	return ChatMessage{ID: m.ID, ConversationID: m.ConversationID, Sender: m.Sender, StaffID: m.StaffID, StaffName: names[m.StaffID],
		Kind: m.Kind, Content: m.Content, Channel: m.Channel, CreatedAt: model.LocalTime(m.CreatedAt)}
}

// Names returns the names of the doctors and patients of conversations, in
// two queries.
func (s *Chat) Names(ctx context.Context, cs []model.Conversation) (doctors, patients map[uint64]string) {
	patients = map[uint64]string{}
	var dids, pids []uint64
	for _, c := range cs {
		pids = append(pids, c.PatientID)
		if c.DoctorID != nil {
			dids = append(dids, *c.DoctorID)
		}
	}
	doctors = s.staffNamesByID(ctx, dids)
	if len(pids) > 0 {
		var ps []model.Patient
		if err := s.db.Conn(ctx).Select("id", "name").Where("id IN ?", pids).Find(&ps).Error; err != nil {
			s.log.Warn("chat: patient names", "err", err)
		}
		for _, p := range ps {
			patients[p.ID] = p.Name
		}
	}
	return doctors, patients
}

// system adds a note both sides see (a transfer, a closing) in ctx's
// transaction.
func (s *Chat) system(ctx context.Context, cv *model.Conversation, text string) (*model.ChatMessage, error) {
	m := model.ChatMessage{ConversationID: cv.ID, Sender: model.SenderSystem, Kind: "text", Content: text, Channel: "mp", CreatedAt: s.now().UTC()}
	return &m, s.db.Conn(ctx).Create(&m).Error
}
