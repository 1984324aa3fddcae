package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/coord"
	"careloop/model"
	"careloop/notify"
)

// Errors of campaigns.
var (
	ErrBadCampaign       = model.NewError(model.KindRule, "invalid_campaign", "活动设置不正确")
	ErrTemplateForbidden = model.NewError(model.KindRule, "template_not_allowed", "营销活动不能使用模板消息（微信禁止用模板消息做营销），请用订阅消息或群发")
	ErrCampaignState     = model.NewError(model.KindConflict, "campaign_state", "活动当前状态不允许此操作")
)

// Campaigns reach a segment with a subscribe message or a mass send, at
// most once per patient, only with their marketing consent, outside the
// quiet hours, under the fatigue cap every campaign shares, with an
// optional coupon and a conversion goal attributed last-touch. A worker
// prepares the recipients in batches (resumable) and follows the sending.
type Campaigns struct {
	db       *model.DB
	segments *Segments
	outbox   *notify.Outbox
	mass     *MassSends
	audit    *Audit
	locker   coord.Locker
	log      *slog.Logger
	now      func() time.Time
	wake     doorbell
	// Every is how often Run looks for work without being woken; Lease how
	// long a worker keeps a campaign it prepares; Batch how many patients
	// one transaction prepares.
	Every time.Duration
	Lease time.Duration
	Batch int
}

// NewCampaigns returns the campaign use cases.
func NewCampaigns(db *model.DB, segments *Segments, outbox *notify.Outbox, mass *MassSends, audit *Audit, locker coord.Locker, log *slog.Logger, now func() time.Time) *Campaigns {
	if now == nil {
		now = time.Now
	}
	return &Campaigns{db: db, segments: segments, outbox: outbox, mass: mass, audit: audit, locker: locker, log: log, now: now,
		wake: newDoorbell(), Every: 5 * time.Second, Lease: 2 * time.Minute, Batch: 5000}
}

// SetClock replaces the clock (tests).
func (s *Campaigns) SetClock(now func() time.Time) { s.now = now }

// CampaignVariant is one version of a campaign's message: the subscribe
// template's data, or the mass send's article or text.
type CampaignVariant struct {
	Data      map[string]string `json:"data,omitempty"`
	ArticleID *uint64           `json:"article_id,omitempty"`
	Text      string            `json:"text,omitempty"`
}

// CampaignGoal is what counts as a conversion: a booking (of a package, if
// given) or the campaign's coupon used, within Days of receiving it.
type CampaignGoal struct {
	Kind      string  `json:"kind"`
	PackageID *uint64 `json:"package_id,omitempty"`
	Days      int     `json:"days"`
}

// CampaignInput is a campaign as written.
type CampaignInput struct {
	Name           string
	SegmentID      uint64
	Channel        string
	TemplateID     string
	Page           string
	Message        CampaignVariant
	VariantB       *CampaignVariant
	CouponRewardID *uint64
	Goal           CampaignGoal
	StartAt        *time.Time
}

// FatigueCap is the most marketing messages a patient receives, counted
// over every campaign in the trailing 7 and 30 days.
type FatigueCap struct {
	PerWeek  int `json:"per_week"`
	PerMonth int `json:"per_month"`
}

// DefaultFatigueCap: at most 2 a week and 4 a month.
var DefaultFatigueCap = FatigueCap{PerWeek: 2, PerMonth: 4}

const fatigueKey = "campaign.fatigue"

var subscribeKey = regexp.MustCompile(`^(thing|time|date|number|phrase|name|amount|character_string|letter|symbol|phone_number|car_number)\d+$`)

const campaignTextMax = 600

// validate checks the input and returns the variants to store.
func (s *Campaigns) validate(ctx context.Context, in *CampaignInput) ([]CampaignVariant, error) {
	in.Name = strings.TrimSpace(in.Name)
	if in.Name == "" || utf8.RuneCountInString(in.Name) > 32 {
		return nil, ErrBadCampaign.WithMessage("活动名称应为 1–32 个字")
	}
	switch in.Channel {
	case "template":
		return nil, ErrTemplateForbidden
	case model.CampaignSubscribe, model.CampaignMass:
	default:
		return nil, ErrBadCampaign.WithMessage("发送方式应为 subscribe（订阅消息）或 mass（公众号群发）")
	}
	var seg model.Segment
	if err := s.db.Conn(ctx).Where("id = ?", in.SegmentID).Take(&seg).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, ErrBadCampaign.WithMessage("分群不存在")
		}
		return nil, fmt.Errorf("campaign segment: %w", err)
	}
	if seg.Purpose != model.SegmentMarketing {
		return nil, ErrHealthDataNotAllowed.WithMessage("营销活动只能面向营销分群；关怀分群用于复查提醒和回访")
	}
	variants := []CampaignVariant{in.Message}
	if in.VariantB != nil {
		variants = append(variants, *in.VariantB)
	}
	for i := range variants {
		v := &variants[i]
		name := string(rune('A' + i))
		if in.Channel == model.CampaignSubscribe {
			if v.ArticleID != nil || v.Text != "" || len(v.Data) == 0 {
				return nil, ErrBadCampaign.WithMessage("方案 %s：订阅消息需填写模板内容（data）", name)
			}
			for k, val := range v.Data {
				if !subscribeKey.MatchString(k) || strings.TrimSpace(val) == "" || utf8.RuneCountInString(val) > 20 {
					return nil, ErrBadCampaign.WithMessage("方案 %s：模板字段 %s 不正确（字段名如 thing1，内容 1–20 字）", name, k)
				}
			}
			continue
		}
		v.Text = strings.TrimSpace(v.Text)
		if (v.ArticleID == nil) == (v.Text == "") || len(v.Data) > 0 {
			return nil, ErrBadCampaign.WithMessage("方案 %s：群发请选择一篇文章或填写文字（二者选一）", name)
		}
		if utf8.RuneCountInString(v.Text) > campaignTextMax {
			return nil, ErrBadCampaign.WithMessage("方案 %s：文字不能超过 %d 字", name, campaignTextMax)
		}
		if v.ArticleID != nil {
			a, err := s.mass.articles.get(ctx, *v.ArticleID)
			if err != nil {
				return nil, err
			}
			if a.CoverFileID == 0 {
				return nil, ErrArticleNoCover
			}
		}
	}
	if in.Channel == model.CampaignSubscribe {
		if !slices.Contains(s.outbox.SubscribeTemplates(notify.ReasonCampaign), in.TemplateID) {
			return nil, ErrBadCampaign.WithMessage("订阅消息模板 %q 未配置为营销模板", in.TemplateID)
		}
	} else if in.TemplateID != "" {
		return nil, ErrBadCampaign.WithMessage("群发不使用订阅消息模板")
	}
	if in.Page == "" {
		in.Page = "pages/packages/list"
	}
	if len(in.Page) > 200 {
		return nil, ErrBadCampaign.WithMessage("小程序页面路径过长")
	}
	if in.CouponRewardID != nil {
		var r model.Reward
		if err := s.db.Conn(ctx).Where("id = ?", *in.CouponRewardID).Take(&r).Error; err != nil || r.Kind != model.RewardCoupon {
			return nil, ErrBadCampaign.WithMessage("优惠券不存在")
		}
	}
	switch in.Goal.Kind {
	case "", "booking":
		in.Goal.Kind = "booking"
	case "coupon":
		if in.CouponRewardID == nil {
			return nil, ErrBadCampaign.WithMessage("以用券为目标时须随活动发券")
		}
	default:
		return nil, ErrBadCampaign.WithMessage("转化目标应为 booking（预约）或 coupon（用券）")
	}
	if in.Goal.Days == 0 {
		in.Goal.Days = 30
	}
	if in.Goal.Days < 1 || in.Goal.Days > 180 {
		return nil, ErrBadCampaign.WithMessage("转化窗口应为 1–180 天")
	}
	if in.Goal.PackageID != nil {
		if err := s.db.Conn(ctx).Where("id = ?", *in.Goal.PackageID).Take(&model.Package{}).Error; err != nil {
			return nil, ErrBadCampaign.WithMessage("目标套餐不存在")
		}
	}
	return variants, nil
}

// Create writes a campaign as a draft.
func (s *Campaigns) Create(ctx context.Context, by Principal, in CampaignInput) (*model.Campaign, error) {
	if err := by.must(ActCampaigns); err != nil {
		return nil, err
	}
	variants, err := s.validate(ctx, &in)
	if err != nil {
		return nil, err
	}
	msg, _ := json.Marshal(variants)
	start := s.now()
	if in.StartAt != nil {
		start = *in.StartAt
	}
	c := model.Campaign{Name: in.Name, SegmentID: in.SegmentID, Channel: in.Channel, TemplateID: in.TemplateID, Page: in.Page, Message: string(msg),
		CouponRewardID: in.CouponRewardID, GoalKind: in.Goal.Kind, GoalPackageID: in.Goal.PackageID, GoalDays: in.Goal.Days,
		StartAt: start.UTC(), Status: model.CampaignDraft, StaffID: by.ID}
	err = s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Create(&c).Error; err != nil {
			return err
		}
		return s.audit.Record(ctx, by, "campaign.create", nil, fmt.Sprintf("campaign %d %s to segment %d by %s", c.ID, c.Name, c.SegmentID, c.Channel))
	})
	if err != nil {
		return nil, fmt.Errorf("create campaign: %w", err)
	}
	return &c, nil
}

// Get returns a campaign.
func (s *Campaigns) Get(ctx context.Context, by Principal, id uint64) (*model.Campaign, error) {
	if err := by.must(ActCampaigns); err != nil {
		return nil, err
	}
	var c model.Campaign
	if err := s.db.Conn(ctx).Where("id = ?", id).Take(&c).Error; err != nil {
		return nil, model.NotFound(err)
	}
	return &c, nil
}

// List returns campaigns, newest first.
func (s *Campaigns) List(ctx context.Context, by Principal, cursor string, limit int) ([]model.Campaign, string, error) {
	if err := by.must(ActCampaigns); err != nil {
		return nil, "", err
	}
	return page(s.db.Conn(ctx).Model(&model.Campaign{}), "id", cursor, limit, func(c model.Campaign) uint64 { return c.ID })
}

// transition moves campaign id from one of from to to (a conditional
// update decides), with extra columns, audited; fn runs in the same
// transaction.
func (s *Campaigns) transition(ctx context.Context, by Principal, id uint64, from []string, to string, extra map[string]any, fn func(ctx context.Context, c *model.Campaign) error) (*model.Campaign, error) {
	var c model.Campaign
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		if err := db.Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", id).Take(&c).Error; err != nil {
			return model.NotFound(err)
		}
		if !slices.Contains(from, c.Status) {
			return ErrCampaignState.WithMessage("活动当前为「%s」，不能%s", campaignStateNames[c.Status], campaignActionNames[to])
		}
		upd := map[string]any{"status": to, "updated_at": s.now().UTC()}
		for k, v := range extra {
			upd[k] = v
		}
		if to == model.CampaignPaused {
			upd["paused_from"] = c.Status
		}
		if err := db.Model(&model.Campaign{}).Where("id = ? AND status = ?", id, c.Status).Updates(upd).Error; err != nil {
			return err
		}
		prev := c.Status
		c.Status = to
		if fn != nil {
			if err := fn(ctx, &c); err != nil {
				return err
			}
		}
		return s.audit.Record(ctx, by, "campaign."+campaignActions[to], nil, fmt.Sprintf("campaign %d: %s -> %s", id, prev, to))
	})
	if err != nil {
		return nil, err
	}
	s.wake.ring()
	return s.Get(ctx, by, id)
}

var (
	campaignActions     = map[string]string{model.CampaignScheduled: "start", model.CampaignPaused: "pause", model.CampaignCancelled: "cancel", model.CampaignPreparing: "resume", model.CampaignSending: "resume"}
	campaignActionNames = map[string]string{model.CampaignScheduled: "开始", model.CampaignPaused: "暂停", model.CampaignCancelled: "取消", model.CampaignPreparing: "继续", model.CampaignSending: "继续"}
	campaignStateNames  = map[string]string{model.CampaignDraft: "草稿", model.CampaignScheduled: "待开始", model.CampaignPreparing: "准备名单中",
		model.CampaignSending: "发送中", model.CampaignPaused: "已暂停", model.CampaignDone: "已完成", model.CampaignCancelled: "已取消"}
)

// Start schedules a draft: it begins at its start time.
func (s *Campaigns) Start(ctx context.Context, by Principal, id uint64) (*model.Campaign, error) {
	if err := by.must(ActCampaigns); err != nil {
		return nil, err
	}
	return s.transition(ctx, by, id, []string{model.CampaignDraft}, model.CampaignScheduled, nil, nil)
}

// campaignNotices is the subquery of a campaign's notifications.
const campaignNotices = "id IN (SELECT notification_id FROM campaign_recipients WHERE campaign_id = ? AND notification_id IS NOT NULL)"

// Pause holds a campaign: nothing more is prepared, and its messages not
// yet sent wait (a mass send already handed to WeChat cannot be held).
func (s *Campaigns) Pause(ctx context.Context, by Principal, id uint64) (*model.Campaign, error) {
	if err := by.must(ActCampaigns); err != nil {
		return nil, err
	}
	return s.transition(ctx, by, id, []string{model.CampaignScheduled, model.CampaignPreparing, model.CampaignSending}, model.CampaignPaused,
		map[string]any{"claim_token": "", "lease_until": nil}, func(ctx context.Context, c *model.Campaign) error {
			return s.db.Conn(ctx).Model(&model.Notification{}).Where(campaignNotices+" AND status IN ?", id, []string{model.NotifyPending, model.NotifyFailed}).
				Updates(map[string]any{"status": model.NotifyPaused, "last_error": "活动已暂停"}).Error
		})
}

// Resume continues a paused campaign where it stopped.
func (s *Campaigns) Resume(ctx context.Context, by Principal, id uint64) (*model.Campaign, error) {
	if err := by.must(ActCampaigns); err != nil {
		return nil, err
	}
	c, err := s.Get(ctx, by, id)
	if err != nil {
		return nil, err
	}
	to := c.PausedFrom
	if to == "" {
		to = model.CampaignPreparing
	}
	due := s.outbox.AfterQuiet(model.CategoryMarketing, s.now()).UTC()
	out, err := s.transition(ctx, by, id, []string{model.CampaignPaused}, to, map[string]any{"paused_from": ""}, func(ctx context.Context, c *model.Campaign) error {
		return s.db.Conn(ctx).Model(&model.Notification{}).Where(campaignNotices+" AND status = ?", id, model.NotifyPaused).
			Updates(map[string]any{"status": model.NotifyPending, "due_at": due, "last_error": ""}).Error
	})
	if err == nil {
		s.outbox.Wake(ctx)
	}
	return out, err
}

// Cancel stops a campaign for good: what was not sent never is.
func (s *Campaigns) Cancel(ctx context.Context, by Principal, id uint64) (*model.Campaign, error) {
	if err := by.must(ActCampaigns); err != nil {
		return nil, err
	}
	return s.transition(ctx, by, id, []string{model.CampaignDraft, model.CampaignScheduled, model.CampaignPreparing, model.CampaignSending, model.CampaignPaused},
		model.CampaignCancelled, map[string]any{"claim_token": "", "lease_until": nil, "finished_at": s.now().UTC()}, func(ctx context.Context, c *model.Campaign) error {
			return s.db.Conn(ctx).Model(&model.Notification{}).Where(campaignNotices+" AND status IN ?", id, []string{model.NotifyPending, model.NotifyFailed, model.NotifyPaused}).
				Updates(map[string]any{"status": model.NotifyCancelled, "last_error": "活动已取消"}).Error
		})
}

// Templates lists the subscribe templates campaigns may use.
func (s *Campaigns) Templates(_ context.Context, by Principal) ([]string, error) {
	if err := by.must(ActCampaigns); err != nil {
		return nil, err
	}
	return s.outbox.SubscribeTemplates(notify.ReasonCampaign), nil
}

// ErrNotRecipient: the campaign did not reach the patient.
var ErrNotRecipient = model.NewError(model.KindNotFound, "not_found", "未找到该活动")

// Opened records that patient p opened campaign id's message (the
// mini-program page it leads to tells); only the first time counts.
func (s *Campaigns) Opened(ctx context.Context, p Principal, id uint64) error {
	if !p.IsPatient() {
		return model.ErrForbidden
	}
	var r model.CampaignRecipient
	if err := s.db.Conn(ctx).Where("campaign_id = ? AND patient_id = ? AND skip = ''", id, p.ID).Take(&r).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return ErrNotRecipient
		}
		return fmt.Errorf("campaign %d recipient: %w", id, err)
	}
	return s.db.Conn(ctx).Model(&model.CampaignRecipient{}).Where("campaign_id = ? AND patient_id = ? AND opened_at IS NULL", id, p.ID).
		Update("opened_at", s.now().UTC()).Error
}

// Fatigue returns the fatigue cap (the default until changed).
func (s *Campaigns) Fatigue(ctx context.Context, by Principal) (FatigueCap, error) {
	if err := by.must(ActCampaigns); err != nil {
		return FatigueCap{}, err
	}
	return s.fatigue(ctx)
}

func (s *Campaigns) fatigue(ctx context.Context) (FatigueCap, error) {
	out := DefaultFatigueCap
	var st model.Setting
	if err := s.db.Conn(ctx).Where("`key` = ?", fatigueKey).Limit(1).Find(&st).Error; err != nil {
		return out, fmt.Errorf("fatigue cap: %w", err)
	}
	if st.Value != "" {
		if err := json.Unmarshal([]byte(st.Value), &out); err != nil {
			return out, fmt.Errorf("fatigue cap: %w", err)
		}
	}
	return out, nil
}

// SetFatigue changes the fatigue cap for campaigns prepared from now on.
func (s *Campaigns) SetFatigue(ctx context.Context, by Principal, f FatigueCap) (FatigueCap, error) {
	if err := by.must(ActCampaigns); err != nil {
		return FatigueCap{}, err
	}
	if f.PerWeek < 1 || f.PerMonth < f.PerWeek || f.PerMonth > 31 {
		return FatigueCap{}, ErrBadCampaign.WithMessage("每周上限至少 1 条，每月上限不少于每周上限且不超过 31 条")
	}
	b, _ := json.Marshal(f)
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Clauses(clause.OnConflict{UpdateAll: true}).
			Create(&model.Setting{Key: fatigueKey, Value: string(b), UpdatedBy: by.ID, UpdatedAt: s.now()}).Error; err != nil {
			return err
		}
		return s.audit.Record(ctx, by, "campaign.fatigue", nil, string(b))
	})
	if err != nil {
		return FatigueCap{}, fmt.Errorf("save fatigue cap: %w", err)
	}
	return f, nil
}

// Variants reads a campaign's message variants.
func Variants(c *model.Campaign) []CampaignVariant {
	var out []CampaignVariant
	_ = json.Unmarshal([]byte(c.Message), &out)
	return out
}

// CampaignCounts is a campaign's progress: recipients queued, sent,
// failed, skipped by reason; conversions (per variant).
type CampaignCounts struct {
	Recipients  int            `json:"recipients"`
	Queued      int            `json:"queued"`
	Sent        int            `json:"sent"`
	Failed      int            `json:"failed"`
	Cancelled   int            `json:"cancelled"`
	Opened      int            `json:"opened"`
	Skipped     map[string]int `json:"skipped"`
	Conversions map[string]int `json:"conversions"` // per variant, and "total"
	Reached     map[string]int `json:"reached"`     // sent per variant
}

// Counts reads a campaign's progress.
func (s *Campaigns) Counts(ctx context.Context, by Principal, id uint64) (*CampaignCounts, error) {
	if err := by.must(ActCampaigns); err != nil {
		return nil, err
	}
	c, err := s.Get(ctx, by, id)
	if err != nil {
		return nil, err
	}
	db := s.db.Conn(ctx)
	out := &CampaignCounts{Skipped: map[string]int{}, Conversions: map[string]int{"total": 0}, Reached: map[string]int{}}
	for _, k := range []string{model.SkipNoConsent, model.SkipOptedOut, model.SkipCapped, model.SkipNoCredit, model.SkipNotFollower, model.SkipMassLimit} {
		out.Skipped[k] = 0
	}
	var bySkip []struct {
		Skip string
		N    int
	}
	if err := db.Model(&model.CampaignRecipient{}).Select("skip, COUNT(*) AS n").Where("campaign_id = ?", id).Group("skip").Scan(&bySkip).Error; err != nil {
		return nil, fmt.Errorf("campaign %d recipients: %w", id, err)
	}
	queued := 0
	for _, r := range bySkip {
		out.Recipients += r.N
		if r.Skip == "" {
			queued = r.N
		} else {
			out.Skipped[r.Skip] = r.N
		}
	}
	if c.Channel == model.CampaignSubscribe {
		var byStatus []struct {
			Variant, Status string
			N               int
		}
		if err := db.Table("campaign_recipients AS r").Select("r.variant AS variant, n.status AS status, COUNT(*) AS n").
			Joins("JOIN notifications n ON n.id = r.notification_id").Where("r.campaign_id = ?", id).Group("r.variant, n.status").Scan(&byStatus).Error; err != nil {
			return nil, fmt.Errorf("campaign %d messages: %w", id, err)
		}
		for _, r := range byStatus {
			switch r.Status {
			case model.NotifySent:
				out.Sent += r.N
				out.Reached[r.Variant] += r.N
			case model.NotifyDead, model.NotifyUndeliverable:
				out.Failed += r.N
			case model.NotifyCancelled:
				out.Cancelled += r.N
			default:
				out.Queued += r.N
			}
		}
	} else {
		var ms []model.MassSend
		if ids := massIDs(c); len(ids) > 0 {
			if err := db.Where("id IN ?", ids).Find(&ms).Error; err != nil {
				return nil, fmt.Errorf("campaign %d mass sends: %w", id, err)
			}
		}
		handed := 0
		for _, m := range ms {
			handed += m.Total + m.SkippedMonthly + m.SkippedNotFollow
			out.Sent += m.Sent
			out.Failed += m.Errors + m.Filtered + m.SkippedMonthly + m.SkippedNotFollow
			if m.Status == model.MassFailed { // nothing more will go (WeChat wants two openids a call, or refused)
				out.Failed += max(0, m.Total-m.Sent-m.Errors-m.Filtered)
			}
		}
		out.Queued = max(0, queued-out.Sent-out.Failed)
		if c.Status == model.CampaignCancelled {
			out.Cancelled, out.Queued = max(0, queued-handed), 0
		}
		out.Reached = nil
	}
	var opened int64
	if err := db.Model(&model.CampaignRecipient{}).Where("campaign_id = ? AND opened_at IS NOT NULL", id).Count(&opened).Error; err != nil {
		return nil, fmt.Errorf("campaign %d opened: %w", id, err)
	}
	out.Opened = int(opened)
	var conv []struct {
		Variant string
		N       int
	}
	if err := db.Model(&model.CampaignRecipient{}).Select("variant, COUNT(*) AS n").Where("campaign_id = ? AND converted_at IS NOT NULL", id).
		Group("variant").Scan(&conv).Error; err != nil {
		return nil, fmt.Errorf("campaign %d conversions: %w", id, err)
	}
	for _, r := range conv {
		out.Conversions[r.Variant] = r.N
		out.Conversions["total"] += r.N
	}
	return out, nil
}

func massIDs(c *model.Campaign) []uint64 {
	var ids []uint64
	if c.MassSendIDs != "" {
		_ = json.Unmarshal([]byte(c.MassSendIDs), &ids)
	}
	return ids
}
