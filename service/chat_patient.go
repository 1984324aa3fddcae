package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/model"
)

// StartRequest opens (or returns) a patient's conversation on a topic.
type StartRequest struct {
	Topic      string
	Department string
	DoctorID   uint64 // the doctor the patient chose; 0 for none
}

func openKey(patientID uint64, topic string) *string {
	k := fmt.Sprintf("%d|%s", patientID, topic)
	return &k
}

// Start returns the patient's open conversation on the topic, opening and
// routing a new one when there is none; created says which.
func (s *Chat) Start(ctx context.Context, p Principal, req StartRequest) (*model.Conversation, bool, error) {
	req.Topic = strings.TrimSpace(req.Topic)
	if req.Topic == "" {
		req.Topic = DefaultTopic
	}
	if utf8.RuneCountInString(req.Topic) > 32 || utf8.RuneCountInString(req.Department) > 64 {
		return nil, false, ErrBadTopic
	}
	if req.DoctorID != 0 {
		if err := s.checkDoctor(ctx, req.DoctorID); err != nil {
			return nil, false, err
		}
	}
	return s.open(ctx, p.ID, req, "mp")
}

func (s *Chat) open(ctx context.Context, patientID uint64, req StartRequest, channel string) (*model.Conversation, bool, error) {
	now := s.now().UTC()
	cv := model.Conversation{PatientID: patientID, Topic: req.Topic, OpenKey: openKey(patientID, req.Topic), Department: req.Department,
		Status: model.ConversationOpen, Channel: channel, LastMessageAt: now}
	if err := s.db.Conn(ctx).Create(&cv).Error; err != nil {
		if !model.IsDuplicate(err) {
			return nil, false, err
		}
		// Already open (perhaps opened a moment ago by a concurrent request).
		err = s.db.Conn(ctx).Where("open_key = ?", *cv.OpenKey).Take(&cv).Error
		return &cv, false, model.NotFound(err)
	}
	var chosen *uint64
	if req.DoctorID != 0 {
		chosen = &req.DoctorID
	}
	doctor, err := s.route(ctx, req.Department, chosen, 0)
	if err != nil {
		return nil, false, err
	}
	if doctor != nil {
		if err := s.db.Conn(ctx).Model(&model.Conversation{}).Where("id = ? AND doctor_id IS NULL", cv.ID).Update("doctor_id", *doctor).Error; err != nil {
			return nil, false, err
		}
		cv.DoctorID = doctor
		s.live.Publish(ctx, ChatEvent{Type: "assigned", ConversationID: cv.ID, PatientID: patientID, DoctorID: doctor, StaffOnly: true})
	}
	return &cv, true, nil
}

// PatientMessage is what a patient sends.
type PatientMessage struct {
	Kind      string // text or image
	Content   string // the text, or the image's file key / URL
	ClientKey string // makes a resend a no-op
	channel   string // mp or oa: where an image may come from
}

func (m *PatientMessage) check() error {
	if m.Kind == "" {
		m.Kind = "text"
	}
	m.Content = strings.TrimSpace(m.Content)
	if (m.Kind != "text" && m.Kind != "image") || m.Content == "" || utf8.RuneCountInString(m.Content) > 1000 || len(m.ClientKey) > 64 {
		return ErrBadMessage
	}
	if m.Kind == "image" && !validImageRef(m.Content, m.channel) {
		return ErrBadImage
	}
	return nil
}

// Mine lists the patient's conversations, newest first.
func (s *Chat) Mine(ctx context.Context, p Principal) ([]model.Conversation, error) {
	var out []model.Conversation
	return out, s.db.Conn(ctx).Where("patient_id = ?", p.ID).Order("last_message_at DESC, id DESC").Limit(100).Find(&out).Error
}

// mine returns the patient's own conversation id (404 for anyone else's).
func (s *Chat) mine(ctx context.Context, by Principal, id uint64) (*model.Conversation, error) {
	var cv model.Conversation
	err := s.db.Conn(ctx).Where("id = ? AND patient_id = ?", id, by.ID).Take(&cv).Error
	return &cv, model.NotFound(err)
}

// Send adds a patient's message to their conversation. The returned
// auto-reply (outside working hours) has already been added too.
func (s *Chat) Send(ctx context.Context, p Principal, conversationID uint64, m PatientMessage) (*ChatMessage, *ChatMessage, error) {
	if err := m.check(); err != nil {
		return nil, nil, err
	}
	cv, err := s.mine(ctx, p, conversationID)
	if err != nil {
		return nil, nil, err
	}
	if cv.Status != model.ConversationOpen {
		return nil, nil, ErrConversationClosed
	}
	if ok, _, err := s.limiter.Allow(ctx, fmt.Sprintf("chat:%d", p.ID), MessagesPerMinute, time.Minute); err == nil && !ok {
		return nil, nil, ErrChatTooFast
	}
	var key *string
	if m.ClientKey != "" {
		k := fmt.Sprintf("mp:%d:%s", p.ID, m.ClientKey)
		key = &k
	}
	return s.append(ctx, cv, m, key, "mp")
}

// append stores a patient's message and, on the first unanswered message
// outside working hours, the automatic reply.
func (s *Chat) append(ctx context.Context, cv *model.Conversation, m PatientMessage, key *string, channel string) (*ChatMessage, *ChatMessage, error) {
	now := s.now().UTC()
	msg := model.ChatMessage{ConversationID: cv.ID, Sender: model.SenderPatient, Kind: m.Kind, Content: m.Content, Channel: channel, ClientKey: key, CreatedAt: now}
	if name, ok := strings.CutPrefix(m.Content, imagePrefix); ok && m.Kind == "image" {
		msg.ImageKey = &name
	}
	var auto *model.ChatMessage
	settings := s.Settings(ctx)
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		msg.ID, auto = 0, nil
		if err := s.db.Conn(ctx).Create(&msg).Error; err != nil {
			if model.IsDuplicate(err) && key != nil {
				return errReplay
			}
			return err
		}
		if msg.ImageKey != nil {
			// The patient's own upload, sent once: it becomes this message's.
			res := s.db.Conn(ctx).Model(&model.ChatUpload{}).Where("`key` = ? AND patient_id = ? AND message_id IS NULL", *msg.ImageKey, cv.PatientID).
				Update("message_id", msg.ID)
			if res.Error != nil {
				return fmt.Errorf("claim chat upload: %w", res.Error)
			}
			if res.RowsAffected == 0 {
				return ErrBadImage
			}
		}
		var fresh model.Conversation
		if err := s.db.Conn(ctx).Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", cv.ID).Take(&fresh).Error; err != nil {
			return err
		}
		if fresh.Status != model.ConversationOpen {
			return ErrConversationClosed
		}
		upd := map[string]any{"staff_unread": gorm.Expr("staff_unread + 1"), "last_message": model.SealText(preview(m)), "last_message_at": now, "channel": channel}
		if fresh.AwaitingSince == nil {
			upd["awaiting_since"] = now
			if !settings.Open(now) {
				auto = &model.ChatMessage{ConversationID: cv.ID, Sender: model.SenderSystem, Kind: "text", Content: settings.offHoursText(now), Channel: channel, CreatedAt: now}
				if err := s.db.Conn(ctx).Create(auto).Error; err != nil {
					return err
				}
			}
		}
		*cv = fresh
		return s.db.Conn(ctx).Model(&model.Conversation{}).Where("id = ?", cv.ID).Updates(upd).Error
	})
	if errors.Is(err, errReplay) {
		if err := s.db.Conn(ctx).Where("client_key = ?", *key).Take(&msg).Error; err != nil {
			return nil, nil, err
		}
		return s.view(ctx, &msg), nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	out := s.view(ctx, &msg)
	s.live.Publish(ctx, ChatEvent{Type: "message", ConversationID: cv.ID, PatientID: cv.PatientID, DoctorID: cv.DoctorID, Message: out})
	var autoOut *ChatMessage
	if auto != nil {
		autoOut = s.view(ctx, auto)
		s.live.Publish(ctx, ChatEvent{Type: "message", ConversationID: cv.ID, PatientID: cv.PatientID, DoctorID: cv.DoctorID, Message: autoOut})
	}
	return out, autoOut, nil
}

var errReplay = errors.New("replayed message")

func preview(m PatientMessage) string {
	if m.Kind == "image" {
		return "[图片]"
	}
	return model.Truncate(m.Content, 60)
}

// Wait blocks until the patient's conversation has a message after afterID
// or wait elapses (the mini-program's long poll), then returns what is new.
func (s *Chat) Wait(ctx context.Context, p Principal, conversationID, afterID uint64, wait time.Duration) (*model.Conversation, []ChatMessage, error) {
	if wait <= 0 {
		return s.Messages(ctx, p, conversationID, afterID, 0)
	}
	// Listen before reading, so that a message arriving in between is not missed.
	client, done := s.live.Patient(p.ID)
	defer done()
	cv, msgs, err := s.Messages(ctx, p, conversationID, afterID, 0)
	if err != nil || len(msgs) > 0 {
		return cv, msgs, err
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return cv, msgs, nil
		case <-t.C:
			return cv, msgs, nil
		case ev := <-client.C:
			var e ChatEvent
			if json.Unmarshal(ev, &e) == nil && e.ConversationID == conversationID && e.Type == "message" {
				return s.Messages(ctx, p, conversationID, afterID, 0)
			}
		}
	}
}
