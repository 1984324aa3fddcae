package service

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

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

// ChatSettings are the chat's working hours and escalation, edited by admins.
type ChatSettings struct {
	WorkStart string `json:"work_start"` // "08:00", Asia/Shanghai
	WorkEnd   string `json:"work_end"`   // "17:30"
	// Workdays are ISO weekdays: 1 Monday … 7 Sunday.
	Workdays             []int  `json:"workdays"`
	EscalateAfterMinutes int    `json:"escalate_after_minutes"`
	OffHoursReply        string `json:"off_hours_reply"`
}

// DefaultChatSettings apply until an admin saves their own.
func DefaultChatSettings() ChatSettings {
	return ChatSettings{WorkStart: "08:00", WorkEnd: "17:30", Workdays: []int{1, 2, 3, 4, 5, 6}, EscalateAfterMinutes: 30,
		OffHoursReply: "您好，现在是非工作时间，医生将于{next}后尽快回复您。如有急症请立即拨打 120 或前往急诊。"}
}

const chatSettingsKey = "chat.settings"

func clockMinutes(s string) (int, bool) {
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, false
	}
	return t.Hour()*60 + t.Minute(), true
}

func (c ChatSettings) valid() bool {
	a, ok1 := clockMinutes(c.WorkStart)
	b, ok2 := clockMinutes(c.WorkEnd)
	if !ok1 || !ok2 || a >= b || c.EscalateAfterMinutes < 1 || c.EscalateAfterMinutes > 7*24*60 || len(c.Workdays) == 0 {
		return false
	}
	for _, d := range c.Workdays {
		if d < 1 || d > 7 {
			return false
		}
	}
	return strings.TrimSpace(c.OffHoursReply) != "" && utf8.RuneCountInString(c.OffHoursReply) <= 300
}

func (c ChatSettings) workday(t time.Time) bool {
	wd := int(t.Weekday())
	if wd == 0 {
		wd = 7
	}
	for _, d := range c.Workdays {
		if d == wd {
			return true
		}
	}
	return false
}

// Open reports whether doctors are at work at t.
func (c ChatSettings) Open(t time.Time) bool {
	l := t.In(model.Shanghai)
	m := l.Hour()*60 + l.Minute()
	a, _ := clockMinutes(c.WorkStart)
	b, _ := clockMinutes(c.WorkEnd)
	return c.workday(l) && m >= a && m < b
}

// NextOpening is the next start of working hours after t.
func (c ChatSettings) NextOpening(t time.Time) time.Time {
	l := t.In(model.Shanghai)
	a, _ := clockMinutes(c.WorkStart)
	for i := 0; i < 8; i++ {
		d := l.AddDate(0, 0, i)
		start := time.Date(d.Year(), d.Month(), d.Day(), a/60, a%60, 0, 0, model.Shanghai)
		if c.workday(d) && start.After(t) {
			return start
		}
	}
	return t
}

func (c ChatSettings) offHoursText(t time.Time) string {
	next := c.NextOpening(t)
	when := next.Format("1月2日 15:04")
	if l := t.In(model.Shanghai); next.YearDay() == l.YearDay() && next.Year() == l.Year() {
		when = "今天 " + next.Format("15:04")
	} else if tm := l.AddDate(0, 0, 1); next.YearDay() == tm.YearDay() && next.Year() == tm.Year() {
		when = "明天 " + next.Format("15:04")
	}
	return strings.ReplaceAll(c.OffHoursReply, "{next}", when)
}

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

// ErrBadImage refuses an upload that is not a JPEG or PNG of at most 5 MB.
var ErrBadImage = model.NewError(model.KindInvalid, "invalid_image", "图片须为 JPG 或 PNG 格式，且不超过 5MB")

// MaxChatImage is the largest image a patient may send.
const MaxChatImage = 5 << 20

// imagePrefix marks a message content that is an image we store.
const imagePrefix = "chat/images/"

// Limits of chat images: uploads per patient a minute and a day; an
// upload not sent within UploadTTL expires.
const (
	UploadsPerMinute = 10
	UploadsPerDay    = 100
	UploadTTL        = 24 * time.Hour
)

// ErrUploadQuota: too many images uploaded.
var ErrUploadQuota = model.NewError(model.KindTooMany, "upload_quota", "上传图片过于频繁，请稍后再试")

// SaveImage stores an image a patient is about to send and returns the
// content to send it with (kind "image"): usable once, by them only.
func (s *Chat) SaveImage(ctx context.Context, p Principal, data []byte) (string, error) {
	if !p.IsPatient() {
		return "", model.ErrForbidden
	}
	if len(data) == 0 || len(data) > MaxChatImage {
		return "", ErrBadImage
	}
	for _, l := range []struct {
		key    string
		n      int
		window time.Duration
	}{{fmt.Sprintf("chat-upload-min:%d", p.ID), UploadsPerMinute, time.Minute}, {fmt.Sprintf("chat-upload-day:%d", p.ID), UploadsPerDay, 24 * time.Hour}} {
		if ok, _, err := s.limiter.Allow(ctx, l.key, l.n, l.window); err == nil && !ok {
			return "", ErrUploadQuota
		}
	}
	ext := ""
	switch http.DetectContentType(data) {
	case "image/jpeg":
		ext = ".jpg"
	case "image/png":
		ext = ".png"
	default:
		return "", ErrBadImage
	}
	file := newImageName() + ext
	if err := s.files.Put(ctx, imagePrefix+file, data); err != nil {
		return "", fmt.Errorf("store chat image: %w", err)
	}
	if err := s.db.Conn(ctx).Create(&model.ChatUpload{Key: file, PatientID: p.ID, CreatedAt: s.now().UTC()}).Error; err != nil {
		return "", fmt.Errorf("record chat image: %w", err)
	}
	return imagePrefix + file, nil
}

// ExpireUploads deletes the images uploaded more than UploadTTL ago and
// never sent (a care-rule tick).
func (s *Chat) ExpireUploads(ctx context.Context, now time.Time) error {
	var stale []string
	if err := s.db.Conn(ctx).Model(&model.ChatUpload{}).Where("message_id IS NULL AND created_at < ?", now.Add(-UploadTTL).UTC()).
		Limit(500).Pluck("key", &stale).Error; err != nil {
		return fmt.Errorf("stale chat uploads: %w", err)
	}
	for _, key := range stale {
		res := s.db.Conn(ctx).Where("`key` = ? AND message_id IS NULL", key).Delete(&model.ChatUpload{})
		if res.Error != nil {
			return fmt.Errorf("expire chat upload: %w", res.Error)
		}
		if res.RowsAffected == 1 {
			if err := s.files.Delete(ctx, imagePrefix+key); err != nil {
				s.log.Warn("chat: expired upload's file", "key", key, "err", err)
			}
		}
	}
	return nil
}

func newImageName() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Image opens a stored chat image: a patient only from their own
// conversations; staff reads are audited.
func (s *Chat) Image(ctx context.Context, by Principal, name string) (io.ReadCloser, error) {
	if !imageName.MatchString(name) {
		return nil, model.ErrNotFound
	}
	key := imagePrefix + name
	// The image is the one message's it was sent with (the upload claim
	// lets an upload be sent once, by its uploader), so only that
	// conversation's people see it; images sent before uploads were
	// claimed are found the same way.
	var m model.ChatMessage
	var cv model.Conversation
	if err := s.db.Conn(ctx).Where("image_key = ?", name).First(&m).Error; err != nil {
		return nil, model.NotFound(err)
	}
	if err := s.db.Conn(ctx).Where("id = ?", m.ConversationID).Take(&cv).Error; err != nil {
		return nil, model.NotFound(err)
	}
	if by.IsPatient() && cv.PatientID != by.ID {
		return nil, model.ErrNotFound
	}
	if !by.IsPatient() {
		if err := by.must(ActChatAnswer); err != nil {
			return nil, err
		}
		if err := s.audit.Record(ctx, by, "chat.image", &cv.PatientID, fmt.Sprintf("conversation %d message %d", cv.ID, m.ID)); err != nil {
			return nil, err
		}
	}
	return s.files.Open(ctx, key)
}

// SetClock replaces the chat's clock (tests move it across working hours).
func (s *Chat) SetClock(now func() time.Time) { s.now = now }

// Live is the fan-out the handlers connect clients to.
func (s *Chat) Live() *Live { return s.live }

// Settings returns the working hours and escalation settings.
func (s *Chat) Settings(ctx context.Context) ChatSettings {
	if v, ok := s.cache.get(chatSettingsKey); ok {
		return v.(ChatSettings)
	}
	cs := DefaultChatSettings()
	var st model.Setting
	if err := s.db.Conn(ctx).Where("`key` = ?", chatSettingsKey).Take(&st).Error; err == nil {
		var saved ChatSettings
		if json.Unmarshal([]byte(st.Value), &saved) == nil && saved.valid() {
			cs = saved
		}
	}
	s.cache.put(chatSettingsKey, cs, 5*time.Second)
	return cs
}

// SaveSettings stores new chat settings.
func (s *Chat) SaveSettings(ctx context.Context, by Principal, cs ChatSettings) error {
	if err := by.must(ActChatSettings); err != nil {
		return err
	}
	if !cs.valid() {
		return model.NewError(model.KindInvalid, "invalid_chat_settings", "工作时间（HH:MM，开始早于结束）、工作日（1–7）、升级时限（分钟）或非工作时间回复不正确")
	}
	b, _ := json.Marshal(cs)
	err := s.db.Conn(ctx).Clauses(clause.OnConflict{UpdateAll: true}).
		Create(&model.Setting{Key: chatSettingsKey, Value: string(b), UpdatedBy: by.ID, UpdatedAt: s.now()}).Error
	s.cache.forget(chatSettingsKey)
	return err
}

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

// validImageRef accepts, from the mini-program, only an image uploaded to
// careloop (SaveImage: no outside address reaches a doctor's browser), and
// from the official account only WeChat's own picture link.
func validImageRef(c, channel string) bool {
	if channel == "oa" {
		return strings.HasPrefix(c, "http://mmbiz.qpic.cn/") || strings.HasPrefix(c, "https://mmbiz.qpic.cn/")
	}
	name, ok := strings.CutPrefix(c, imagePrefix)
	return ok && imageName.MatchString(name)
}

var imageName = regexp.MustCompile(`^[0-9a-f]{32}\.(jpg|png)$`)

func preview(m PatientMessage) string {
	if m.Kind == "image" {
		return "[图片]"
	}
	return model.Truncate(m.Content, 60)
}

// FromOA adds a message a follower sent to the official account to their
// open conversation (opening one when needed) and returns the passive reply
// to answer WeChat with ("" for none). msgID makes WeChat's retries no-ops.
func (s *Chat) FromOA(ctx context.Context, openID, msgID, kind, content string) (string, error) {
	m := PatientMessage{Kind: kind, Content: content, channel: "oa"}
	if err := m.check(); err != nil {
		return "", nil // an empty or oversized message: nothing to route
	}
	// Linking an unknown follower asks WeChat for the unionid: ctx bounds
	// it (the callback leaves a slow one to the worker, which calls again).
	id, err := s.followerPatient(ctx, openID)
	if err != nil {
		return "", err
	}
	return s.intake(ctx, id, msgID, m)
}

// intake files a follower's message in their open conversation and returns
// the automatic reply, if any.
func (s *Chat) intake(ctx context.Context, patientID uint64, msgID string, m PatientMessage) (string, error) {
	cv, _, err := s.open(ctx, patientID, StartRequest{Topic: DefaultTopic}, "oa")
	if err != nil {
		return "", err
	}
	key := "oa:" + msgID
	_, auto, err := s.append(ctx, cv, m, &key, "oa")
	if err != nil || auto == nil {
		return "", err
	}
	return auto.Content, nil
}

// followerPatient finds the patient behind an official-account follower:
// linked through the unionid, or a new patient known only by this follower.
func (s *Chat) followerPatient(ctx context.Context, openID string) (uint64, error) {
	var f model.Follower
	err := s.db.Conn(ctx).Where("open_id = ?", openID).Take(&f).Error
	if err == nil && f.PatientID != nil {
		return *f.PatientID, nil
	}
	if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return 0, err
	}
	if s.followers != nil {
		if err := s.followers.Link(ctx, openID); err != nil {
			s.log.Warn("chat: link follower", "err", err)
		}
		if err := s.db.Conn(ctx).Where("open_id = ?", openID).Take(&f).Error; err == nil && f.PatientID != nil {
			return *f.PatientID, nil
		}
	}
	// WeChat gave no unionid: the follower becomes a patient of their own,
	// merged later if they log in to the mini-program with the same unionid.
	var id uint64
	err = s.db.InTx(ctx, func(ctx context.Context) error {
		var f model.Follower
		if err := s.db.Conn(ctx).Clauses(clause.Locking{Strength: "UPDATE"}).Where("open_id = ?", openID).Take(&f).Error; err == nil && f.PatientID != nil {
			id = *f.PatientID
			return nil
		}
		p := model.Patient{Gender: "unknown", Source: "oa"}
		if err := s.db.Conn(ctx).Create(&p).Error; err != nil {
			return err
		}
		id = p.ID
		return s.db.Conn(ctx).Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "open_id"}}, DoUpdates: clause.AssignmentColumns([]string{"patient_id"})}).
			Create(&model.Follower{OpenID: openID, PatientID: &p.ID, SubscribedAt: s.now().UTC()}).Error
	})
	return id, err
}

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

// system adds a note both sides see (a transfer, a closing) in ctx's
// transaction.
func (s *Chat) system(ctx context.Context, cv *model.Conversation, text string) (*model.ChatMessage, error) {
	m := model.ChatMessage{ConversationID: cv.ID, Sender: model.SenderSystem, Kind: "text", Content: text, Channel: "mp", CreatedAt: s.now().UTC()}
	return &m, s.db.Conn(ctx).Create(&m).Error
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
