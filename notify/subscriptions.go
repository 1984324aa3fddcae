package notify

import (
	"context"
	"sort"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/model"
)

// SceneTemplate is a template the mini-program should ask the patient to
// accept at a moment (wx.requestSubscribeMessage takes at most three ids).
type SceneTemplate struct {
	TemplateID string
	Reason     string
	Title      string
}

// Scenes at which the mini-program asks for subscriptions.
var Scenes = []string{"booking", "report", "chat", "survey", "care", "campaign"}

// TemplatesForScene lists the subscribe templates that need the patient's
// consent at scene (long-term templates need none), one per template id.
func (o *Outbox) TemplatesForScene(scene string) []SceneTemplate {
	seen := map[string]bool{}
	var out []SceneTemplate
	for _, r := range o.cfg.Reasons {
		if r.Scene != scene {
			continue
		}
		for _, ch := range r.Channels {
			if ch.Channel != ChannelSubscribe || ch.LongTerm || seen[ch.TemplateID] {
				continue
			}
			seen[ch.TemplateID] = true
			out = append(out, SceneTemplate{TemplateID: ch.TemplateID, Reason: r.Name, Title: r.Title})
		}
	}
	return out
}

// Reasons returns the kinds of notice with their channels and templates,
// as configured.
func (o *Outbox) Reasons() []Reason {
	return append([]Reason(nil), o.cfg.Reasons...)
}

func (o *Outbox) knownTemplate(id string) bool {
	for _, r := range o.cfg.Reasons {
		for _, ch := range r.Channels {
			if ch.Channel == ChannelSubscribe && ch.TemplateID == id {
				return true
			}
		}
	}
	return false
}

// ErrUnknownTemplate says a subscription result names a template we do not use.
var ErrUnknownTemplate = model.NewError(model.KindRule, "unknown_template", "未知的订阅消息模板")

// RecordSubscriptions records what wx.requestSubscribeMessage answered: one
// credit per "accept"; "reject" and "ban" add none. It returns the credits
// now held per template.
func (o *Outbox) RecordSubscriptions(ctx context.Context, patientID uint64, results map[string]string) (map[string]int, error) {
	ids := make([]string, 0, len(results))
	for id, answer := range results {
		if !o.knownTemplate(id) {
			return nil, ErrUnknownTemplate
		}
		switch answer {
		case "accept", "reject", "ban", "filter":
		default:
			return nil, model.ErrInvalid.WithMessage("订阅结果只能是 accept、reject、ban 或 filter")
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	now := o.now().UTC()
	err := o.db.InTx(ctx, func(ctx context.Context) error {
		for _, id := range ids {
			if results[id] != "accept" {
				continue
			}
			c := model.SubscribeCredit{PatientID: patientID, TemplateID: id, Credits: 1, UpdatedAt: now}
			if err := o.db.Conn(ctx).Clauses(clause.OnConflict{
				Columns:   []clause.Column{{Name: "patient_id"}, {Name: "template_id"}},
				DoUpdates: clause.Assignments(map[string]any{"credits": gorm.Expr("credits + 1"), "updated_at": now}),
			}).Create(&c).Error; err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var rows []model.SubscribeCredit
	if err := o.db.Conn(ctx).Where("patient_id = ?", patientID).Find(&rows).Error; err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, r := range rows {
		out[r.TemplateID] = r.Credits
	}
	return out, nil
}

// Preferences returns the patient's opt-outs: category -> receives.
func (o *Outbox) Preferences(ctx context.Context, patientID uint64) (map[string]bool, error) {
	out := map[string]bool{model.CategoryCare: true, model.CategoryMarketing: true}
	var rows []model.NotifyPreference
	if err := o.db.Conn(ctx).Where("patient_id = ?", patientID).Find(&rows).Error; err != nil {
		return nil, err
	}
	for _, r := range rows {
		out[r.Category] = !r.OptOut
	}
	return out, nil
}

// SetPreference opts a patient in or out of care or marketing notices.
// Service notices about the patient's own bookings always go.
func (o *Outbox) SetPreference(ctx context.Context, patientID uint64, category string, receive bool) error {
	if category != model.CategoryCare && category != model.CategoryMarketing {
		return model.NewError(model.KindRule, "invalid_category", "只能设置关怀提醒（care）和营销消息（marketing）")
	}
	p := model.NotifyPreference{PatientID: patientID, Category: category, OptOut: !receive, UpdatedAt: time.Now()}
	return o.db.Conn(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "patient_id"}, {Name: "category"}},
		DoUpdates: clause.AssignmentColumns([]string{"opt_out", "updated_at"}),
	}).Create(&p).Error
}
