package service

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"gorm.io/gorm/clause"

	"careloop/model"
	"careloop/notify"
	"careloop/wxconfig"
)

// InboundMessage is an official-account message or event, decoded.
type InboundMessage struct {
	DedupeKey string
	From      string
	Type      string // text, image, event …
	Event     string // subscribe, unsubscribe, CLICK, SCAN, TEMPLATESENDJOBFINISH
	EventKey  string
	Content   string
	PicURL    string // image messages
	MsgID     int64  // for TEMPLATESENDJOBFINISH and MASSSENDJOBFINISH
	Status    string
	// Publish is the result PUBLISHJOBFINISH carries.
	Publish *wxconfig.PublishResult `json:",omitempty"`
	// Mass is the result MASSSENDJOBFINISH carries.
	Mass *wxconfig.MassResult `json:",omitempty"`
}

// OA handles the official account's callbacks: followers, replies, and
// template-send results.
type OA struct {
	db        *model.DB
	out       *notify.Outbox
	followers *Followers
	log       *slog.Logger
	now       func() time.Time
	// onUserMessage runs after a user message is accepted (the sandbox
	// opens its 48-hour window as WeChat does).
	onUserMessage func(openID string)
	// chat receives followers' text and image messages (nil: none).
	chat *Chat
	// finishWait is how long the callback tries to finish an event before
	// leaving it to the worker (WeChat wants an answer within 5 s);
	// retryAfter is the worker's pause before it takes an event over.
	finishWait, retryAfter time.Duration
	inflight               sync.WaitGroup
	// onPublish ends publications (PUBLISHJOBFINISH).
	onPublish func(ctx context.Context, r wxconfig.PublishResult) error
	// onMass ends mass-send batches (MASSSENDJOBFINISH).
	onMass func(ctx context.Context, r wxconfig.MassResult) error
	// onScan records scans of channels' QR codes.
	onScan func(ctx context.Context, openID, scene string, newFollower bool) error
}

// OnScan hands scans of QR codes to fn (the channels): a new follower's
// (subscribe with a scene) and a follower's (SCAN).
func (s *OA) OnScan(fn func(ctx context.Context, openID, scene string, newFollower bool) error) {
	s.onScan = fn
}

// OnMassFinished hands MASSSENDJOBFINISH events to fn (the mass sends).
func (s *OA) OnMassFinished(fn func(ctx context.Context, r wxconfig.MassResult) error) {
	s.onMass = fn
}

// OnPublishFinished hands PUBLISHJOBFINISH events to fn (the articles).
func (s *OA) OnPublishFinished(fn func(ctx context.Context, r wxconfig.PublishResult) error) {
	s.onPublish = fn
}

// NewOA returns the official-account use cases.
// Followers' messages go to chat; onUserMessage (may be nil) is told of
// each accepted user message.
func NewOA(db *model.DB, out *notify.Outbox, followers *Followers, chat *Chat, onUserMessage func(openID string), log *slog.Logger, now func() time.Time) *OA {
	if now == nil {
		now = time.Now
	}
	return &OA{db: db, out: out, followers: followers, chat: chat, onUserMessage: onUserMessage, log: log, now: now,
		finishWait: 2 * time.Second, retryAfter: 3 * time.Second}
}

const welcomeKey = "oa.welcome"

// DefaultWelcome greets new followers until marketing writes their own.
const DefaultWelcome = "欢迎关注！您可以在这里预约体检、查看报告、咨询医生。"

// Handle processes one accepted message and returns the passive text reply
// ("" for none). A retry of a message already handled returns ("", false).
//
// The event is stored first (committed) and then answered; what needs more
// than the answer — filing a follower's message into their doctor chat,
// linking a new follower through WeChat's user/info — is tried within
// finishWait and otherwise left pending for FinishPending, so that a process
// killed right after answering WeChat loses nothing.
func (s *OA) Handle(ctx context.Context, m InboundMessage) (string, bool, error) {
	payload, _ := json.Marshal(m)
	ev := model.OAEvent{DedupeKey: model.Truncate(m.DedupeKey, 120), OpenID: m.From, Kind: m.Type + ":" + m.Event,
		Content: model.Truncate(m.Content, 2000), Payload: string(payload), Status: model.OAEventDone}
	if err := s.db.Conn(ctx).Create(&ev).Error; err != nil {
		if model.IsDuplicate(err) {
			return "", false, nil // WeChat's retry of a message we have
		}
		return "", false, fmt.Errorf("store official-account event: %w", err)
	}
	reply, more, err := s.handle(ctx, m)
	if err != nil {
		// Forget the event so that WeChat's retry is processed again
		// rather than dropped as a duplicate.
		if derr := s.db.Conn(context.WithoutCancel(ctx)).Where("id = ?", ev.ID).Delete(&model.OAEvent{}).Error; derr != nil {
			s.log.Error("oa: forget failed event", "err", derr)
		}
		return "", true, err
	}
	if !more {
		return reply, true, nil
	}
	if err := s.db.Conn(ctx).Model(&model.OAEvent{}).Where("id = ?", ev.ID).Update("status", model.OAEventPending).Error; err != nil {
		return "", true, fmt.Errorf("mark official-account event %d pending: %w", ev.ID, err)
	}
	// The WeChat SDK's calls take no context: finishing runs on its own,
	// tracked (Wait), and the answer does not wait longer than finishWait.
	type result struct {
		reply string
		err   error
	}
	res := make(chan result, 1)
	bg := context.WithoutCancel(ctx)
	s.inflight.Add(1)
	go func() {
		defer s.inflight.Done()
		fctx, cancel := context.WithTimeout(bg, 15*time.Second)
		defer cancel()
		late, err := s.finish(fctx, m)
		if err == nil {
			err = s.done(fctx, ev.ID)
		}
		if err != nil {
			s.log.Info("oa: event left for the worker", "event", ev.ID, "err", err)
		}
		res <- result{late, err}
	}()
	select {
	case r := <-res:
		if r.err == nil && reply == "" {
			reply = r.reply
		}
	case <-time.After(s.finishWait):
		// WeChat wants its answer within 5 s; the event stays pending until
		// the attempt above (or, should this process die, the worker) ends it.
	}
	return reply, true, nil
}

// Wait waits for the attempts Handle started to finish events.
func (s *OA) Wait() { s.inflight.Wait() }

// handle does what the answer needs; more reports that the event has work
// left for finish.
func (s *OA) handle(ctx context.Context, m InboundMessage) (reply string, more bool, err error) {
	switch {
	case m.Type == "event" && m.Event == "subscribe":
		scene := strings.TrimPrefix(m.EventKey, "qrscene_")
		if err := s.follow(ctx, m.From, true, scene); err != nil {
			return "", false, err
		}
		if scene != "" && s.onScan != nil {
			if err := s.onScan(ctx, m.From, scene, true); err != nil {
				return "", false, err
			}
		}
		return s.welcome(ctx), true, nil // linking the follower is left
	case m.Type == "event" && m.Event == "unsubscribe":
		return "", false, s.follow(ctx, m.From, false, "")
	case m.Type == "event" && m.Event == "SCAN":
		if m.EventKey == "" || s.onScan == nil {
			return "", false, nil
		}
		return "", false, s.onScan(ctx, m.From, m.EventKey, false)
	case m.Type == "event" && m.Event == "CLICK":
		return s.autoReply(ctx, m.EventKey, true), false, nil
	case m.Type == "event" && m.Event == "PUBLISHJOBFINISH":
		if m.Publish == nil || s.onPublish == nil {
			return "", false, nil
		}
		return "", false, s.onPublish(ctx, *m.Publish)
	case m.Type == "event" && m.Event == "MASSSENDJOBFINISH":
		if m.Mass == nil || s.onMass == nil {
			return "", false, nil
		}
		return "", false, s.onMass(ctx, *m.Mass)
	case m.Type == "event" && m.Event == "TEMPLATESENDJOBFINISH":
		return "", false, s.out.TemplateReport(ctx, strconv.FormatInt(m.MsgID, 10), m.Status)
	case m.Type == "event":
		return "", false, nil
	}
	// A user message: it opens WeChat's 48-hour customer-service window.
	if err := s.openWindow(ctx, m.From); err != nil {
		return "", false, err
	}
	if s.onUserMessage != nil {
		s.onUserMessage(m.From)
	}
	if m.Type == "text" {
		// A keyword (exact, then contains) is answered by its reply, not
		// filed as a question for a doctor.
		if r := s.autoReply(ctx, m.Content, false); r != "" {
			return r, false, nil
		}
	}
	return "", s.chat != nil && (m.Type == "text" || m.Type == "image"), nil
}

// finish does an event's remaining work: link a new follower, or file a
// follower's message into their doctor chat (returning its automatic
// reply). Both are idempotent, so finishing twice is harmless.
func (s *OA) finish(ctx context.Context, m InboundMessage) (string, error) {
	if m.Type == "event" {
		return "", s.followers.Link(ctx, m.From)
	}
	content := m.Content
	if m.Type == "image" {
		content = m.PicURL
	}
	return s.chat.FromOA(ctx, m.From, m.DedupeKey, m.Type, content)
}

func (s *OA) done(ctx context.Context, id uint64) error {
	if err := s.db.Conn(ctx).Model(&model.OAEvent{}).Where("id = ?", id).
		Updates(map[string]any{"status": model.OAEventDone, "last_error": ""}).Error; err != nil {
		return fmt.Errorf("mark official-account event %d done: %w", id, err)
	}
	return nil
}

// oaMaxAttempts is how often the worker tries an event before it gives up.
const oaMaxAttempts = 10

// FinishPending finishes the events the callback left (or whose process
// died): each claimed by a conditional update, so that several workers share
// them; retried with a growing pause, given up (failed, logged) after
// oaMaxAttempts. It returns how many it finished.
func (s *OA) FinishPending(ctx context.Context) (int, error) {
	now := s.now().UTC()
	var evs []model.OAEvent
	if err := s.db.Conn(ctx).Where("status = ? AND updated_at < ?", model.OAEventPending, now.Add(-s.retryAfter)).
		Order("id").Limit(100).Find(&evs).Error; err != nil {
		return 0, fmt.Errorf("pending official-account events: %w", err)
	}
	finished := 0
	for _, ev := range evs {
		if ev.Attempts > 0 && now.Sub(ev.UpdatedAt) < time.Duration(ev.Attempts)*s.retryAfter {
			continue // backing off
		}
		res := s.db.Conn(ctx).Model(&model.OAEvent{}).Where("id = ? AND status = ? AND attempts = ?", ev.ID, model.OAEventPending, ev.Attempts).
			Updates(map[string]any{"attempts": ev.Attempts + 1, "updated_at": now})
		if res.Error != nil {
			return finished, fmt.Errorf("claim official-account event %d: %w", ev.ID, res.Error)
		}
		if res.RowsAffected == 0 {
			continue // another worker has it
		}
		var m InboundMessage
		if err := json.Unmarshal([]byte(ev.Payload), &m); err != nil {
			s.giveUp(ctx, ev.ID, "无法解析事件："+err.Error())
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		_, err := s.finish(fctx, m)
		cancel()
		switch {
		case err == nil:
			if err := s.done(ctx, ev.ID); err != nil {
				return finished, err
			}
			finished++
		case ev.Attempts+1 >= oaMaxAttempts:
			s.giveUp(ctx, ev.ID, err.Error())
		default:
			if uerr := s.db.Conn(ctx).Model(&model.OAEvent{}).Where("id = ?", ev.ID).Update("last_error", model.Truncate(err.Error(), 250)).Error; uerr != nil {
				return finished, fmt.Errorf("note the failure of official-account event %d: %w", ev.ID, uerr)
			}
		}
	}
	return finished, nil
}

func (s *OA) giveUp(ctx context.Context, id uint64, why string) {
	s.log.Error("oa: event given up", "event", id, "err", why)
	if err := s.db.Conn(ctx).Model(&model.OAEvent{}).Where("id = ?", id).
		Updates(map[string]any{"status": model.OAEventFailed, "last_error": model.Truncate(why, 250)}).Error; err != nil {
		s.log.Error("oa: mark event failed", "event", id, "err", err)
	}
}

// RunPending runs FinishPending every period until ctx ends.
func (s *OA) RunPending(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if _, err := s.FinishPending(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("oa: finish pending events", "err", err)
		}
	}
}

// openWindow records a follower's message: WeChat now allows 5 customer
// messages within 48 hours.
func (s *OA) openWindow(ctx context.Context, openID string) error {
	now := s.now().UTC()
	f := model.Follower{OpenID: openID, Subscribed: true, SubscribedAt: now, WindowOpenedAt: &now}
	return s.db.Conn(ctx).Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "open_id"}},
		DoUpdates: clause.Assignments(map[string]any{"window_opened_at": now, "window_replies": 0, "subscribed": true})}).Create(&f).Error
}

func (s *OA) follow(ctx context.Context, openID string, subscribed bool, scene string) error {
	f := model.Follower{OpenID: openID, Subscribed: subscribed, Scene: model.Truncate(scene, 120), SubscribedAt: s.now().UTC()}
	cols := []string{"subscribed", "updated_at"}
	if subscribed {
		cols = append(cols, "scene", "subscribed_at")
	}
	return s.db.Conn(ctx).Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "open_id"}}, DoUpdates: clause.AssignmentColumns(cols)}).Create(&f).Error
}

func (s *OA) welcome(ctx context.Context) string {
	var st model.Setting
	if err := s.db.Conn(ctx).Where("`key` = ?", welcomeKey).Take(&st).Error; err == nil && st.Value != "" {
		return st.Value
	}
	return DefaultWelcome
}

// SetWelcome changes the greeting new followers get.
func (s *OA) SetWelcome(ctx context.Context, by Principal, text string) error {
	if err := by.must(ActOAManage); err != nil {
		return err
	}
	text = strings.TrimSpace(text)
	if text == "" || utf8.RuneCountInString(text) > 600 {
		return model.ErrInvalid.WithMessage("欢迎语不能为空，最多 600 字")
	}
	return s.db.Conn(ctx).Clauses(clause.OnConflict{UpdateAll: true}).
		Create(&model.Setting{Key: welcomeKey, Value: text, UpdatedBy: by.ID, UpdatedAt: s.now()}).Error
}

// autoReply finds the reply to text: exact matches first, then contains,
// each by priority; a menu click matches its key exactly.
func (s *OA) autoReply(ctx context.Context, text string, exactOnly bool) string {
	text = strings.TrimSpace(text)
	if text == "" {
		return ""
	}
	var rules []model.AutoReply
	if err := s.db.Conn(ctx).Where("active = ?", true).Order("priority DESC, id").Find(&rules).Error; err != nil {
		return ""
	}
	for _, r := range rules {
		if r.Match == "exact" && r.Keyword == text {
			return r.Reply
		}
	}
	if exactOnly {
		return ""
	}
	for _, r := range rules {
		if r.Match == "contains" && strings.Contains(text, r.Keyword) {
			return r.Reply
		}
	}
	return ""
}

// AutoReplies lists the keyword replies.
func (s *OA) AutoReplies(ctx context.Context, by Principal) ([]model.AutoReply, error) {
	if err := by.must(ActOAManage); err != nil {
		return nil, err
	}
	var out []model.AutoReply
	return out, s.db.Conn(ctx).Order("priority DESC, id").Find(&out).Error
}

// SaveAutoReply creates a keyword reply.
func (s *OA) SaveAutoReply(ctx context.Context, by Principal, r model.AutoReply) (*model.AutoReply, error) {
	if err := by.must(ActOAManage); err != nil {
		return nil, err
	}
	r.Keyword = strings.TrimSpace(r.Keyword)
	if r.Keyword == "" || (r.Match != "exact" && r.Match != "contains") || strings.TrimSpace(r.Reply) == "" || utf8.RuneCountInString(r.Reply) > 600 {
		return nil, model.NewError(model.KindRule, "invalid_auto_reply", "关键词、匹配方式（exact/contains）与回复内容不正确")
	}
	r.Active = true
	return &r, s.db.Conn(ctx).Create(&r).Error
}

// DeleteAutoReply removes a keyword reply.
func (s *OA) DeleteAutoReply(ctx context.Context, by Principal, id uint64) error {
	if err := by.must(ActOAManage); err != nil {
		return err
	}
	res := s.db.Conn(ctx).Delete(&model.AutoReply{}, id)
	if res.Error == nil && res.RowsAffected == 0 {
		return model.ErrNotFound
	}
	return res.Error
}

// OAMenus publishes menus to WeChat (wxconfig.Clients satisfies it).
type OAMenus interface {
	PublishMenu(ctx context.Context, menuJSON string, conditional []string) error
}

// Menu is the official account's menu as marketing edits it: the default
// menu and conditional menus (matchrule by tag and the like).
type Menu struct {
	Button      []json.RawMessage `json:"button"`
	Conditional []struct {
		Button    []json.RawMessage `json:"button"`
		MatchRule map[string]any    `json:"matchrule"`
	} `json:"conditional"`
}

const menuKey = "oa.menu"

// ErrBadMenu says the menu breaks WeChat's rules.
var ErrBadMenu = model.NewError(model.KindRule, "invalid_menu", "菜单不符合微信规则（最多 3 个一级菜单、每个最多 5 个子菜单，个性化菜单需匹配规则）")

// SaveMenu checks and stores the menu (not yet published).
func (s *OA) SaveMenu(ctx context.Context, by Principal, m Menu) error {
	if err := by.must(ActOAManage); err != nil {
		return err
	}
	if len(m.Button) == 0 || len(m.Button) > 3 {
		return ErrBadMenu
	}
	for _, c := range m.Conditional {
		if len(c.Button) == 0 || len(c.Button) > 3 || len(c.MatchRule) == 0 {
			return ErrBadMenu
		}
	}
	b, _ := json.Marshal(m)
	return s.db.Conn(ctx).Clauses(clause.OnConflict{UpdateAll: true}).
		Create(&model.Setting{Key: menuKey, Value: string(b), UpdatedBy: by.ID, UpdatedAt: s.now()}).Error
}

// LoadMenu returns the stored menu.
func (s *OA) LoadMenu(ctx context.Context, by Principal) (*Menu, error) {
	if err := by.must(ActOAManage); err != nil {
		return nil, err
	}
	var st model.Setting
	if err := s.db.Conn(ctx).Where("`key` = ?", menuKey).Take(&st).Error; err != nil {
		return nil, model.NotFound(err)
	}
	var m Menu
	return &m, json.Unmarshal([]byte(st.Value), &m)
}

// ErrWeChatRefused carries WeChat's refusal of a publish to staff.
var ErrWeChatRefused = model.NewError(model.KindRule, "wechat_refused", "微信拒绝了该操作")

// PublishMenu sends the stored menu to WeChat.
func (s *OA) PublishMenu(ctx context.Context, by Principal, menus OAMenus) error {
	if err := by.must(ActOAManage); err != nil {
		return err
	}
	m, err := s.LoadMenu(ctx, by)
	if err != nil {
		return err
	}
	main, _ := json.Marshal(map[string]any{"button": m.Button})
	var cond []string
	for _, c := range m.Conditional {
		b, _ := json.Marshal(map[string]any{"button": c.Button, "matchrule": c.MatchRule})
		cond = append(cond, string(b))
	}
	if err := menus.PublishMenu(ctx, string(main), cond); err != nil {
		if code := wxconfig.CodeOf(err); code != 0 && wxconfig.OutcomeOf(err) != wxconfig.OutcomeRetry {
			return ErrWeChatRefused.WithMessage("微信拒绝了菜单（错误码 %d）", code)
		}
		return fmt.Errorf("%w: %v", ErrWeChatDown, err)
	}
	return nil
}
