// Package notify is careloop's message dispatcher: business code writes
// notification rows (the outbox) in its own transactions; workers claim due
// rows, pick a WeChat channel the patient can receive, render the template,
// send within WeChat's rules and rate limits, and record the outcome.
package notify

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"careloop/model"
)

// Channels a notice can travel by.
const (
	ChannelSubscribe  = "subscribe" // mini-program subscribe message: needs a credit (or a long-term template)
	ChannelOATemplate = "template"  // official-account template message: needs a follower
	ChannelCustomer   = "customer"  // official-account customer-service text: needs WeChat's 48-hour window
)

// ChannelTemplate is one way of carrying a reason: a template and how the
// notice's params fill its fields.
type ChannelTemplate struct {
	Channel    string            `yaml:"channel" json:"channel"`
	TemplateID string            `yaml:"template_id" json:"template_id"`
	LongTerm   bool              `yaml:"long_term" json:"long_term"`
	Fields     map[string]string `yaml:"fields" json:"fields"` // WeChat key -> param name
}

// Reason is a kind of notice: its category, its title, the scene in which
// the mini-program asks for its subscription, and its channels in fallback
// order.
type Reason struct {
	Name     string            `yaml:"name" json:"name"`
	Title    string            `yaml:"title" json:"title"`
	Category string            `yaml:"category" json:"category"`
	Scene    string            `yaml:"scene" json:"scene"`
	Page     string            `yaml:"page" json:"page"`
	Channels []ChannelTemplate `yaml:"channels" json:"channels"`
	// NoticeOnceMinutes, when set, sends a patient at most one notice
	// (subscribe or template; not the customer message itself) of this
	// reason within that many minutes: a doctor who answers in three
	// messages outside WeChat's window sends one "your doctor replied".
	NoticeOnceMinutes int `yaml:"notice_once_minutes" json:"notice_once_minutes"`
	// InOrder sends a patient's notices of this reason one at a time, in
	// the order written, also across retries (a reason with
	// NoticeOnceMinutes is always in order: the database then decides
	// "one notice" without two sends racing).
	InOrder bool `yaml:"in_order" json:"in_order"`
	// ChooseTemplate: each notice names which of the reason's subscribe
	// templates carries it (Notice.TemplateID; a campaign picks its
	// template), and a template without Fields takes the notice's params as
	// its data, key for key.
	ChooseTemplate bool `yaml:"choose_template" json:"choose_template"`
}

// ordered reports whether r's notices go one at a time per patient.
func (r Reason) ordered() bool { return r.InOrder || r.NoticeOnceMinutes > 0 }

// Reasons careloop sends.
const (
	ReasonBookingConfirmed = "booking_confirmed"
	ReasonBookingCancelled = "booking_cancelled"
	ReasonBookingChanged   = "booking_rescheduled"
	ReasonCheckupReminder  = "checkup_reminder"
	ReasonReportReady      = "report_ready"
	ReasonCriticalValue    = "critical_value"
	ReasonSurveyInvite     = "survey_invite"
	ReasonAnnualRecheck    = "annual_recheck"
	ReasonBirthday         = "birthday_care"
	ReasonHoliday          = "holiday_care"
	ReasonNoShow           = "no_show_followup"
	ReasonDoctorReply      = "doctor_reply"
	ReasonPointsExpiry     = "points_expiry"
	ReasonComplaintReply   = "complaint_reply"
	ReasonCampaign         = "campaign"
)

// DefaultReasons are the reasons with the sandbox's template ids; a
// production deployment maps them to its own templates in the config file.
func DefaultReasons() []Reason {
	sub := func(id string, longTerm bool, fields map[string]string) ChannelTemplate {
		return ChannelTemplate{Channel: ChannelSubscribe, TemplateID: id, LongTerm: longTerm, Fields: fields}
	}
	oa := func(fields map[string]string) ChannelTemplate {
		return ChannelTemplate{Channel: ChannelOATemplate, TemplateID: "sbx-oa-tmpl-service", Fields: fields}
	}
	bookingFields := map[string]string{"thing1": "package", "time2": "time", "thing3": "note"}
	oaFields := map[string]string{"first": "title", "keyword1": "package", "keyword2": "time", "remark": "note"}
	return []Reason{
		{Name: ReasonBookingConfirmed, Title: "预约成功通知", Category: model.CategoryService, Scene: "booking", Page: "pages/booking/detail",
			Channels: []ChannelTemplate{sub("sbx-tmpl-booking-confirmed", false, bookingFields), oa(oaFields)}},
		{Name: ReasonBookingCancelled, Title: "预约取消通知", Category: model.CategoryService, Scene: "booking", Page: "pages/booking/list",
			Channels: []ChannelTemplate{sub("sbx-tmpl-booking-confirmed", false, bookingFields), oa(oaFields)}},
		{Name: ReasonBookingChanged, Title: "预约变更通知", Category: model.CategoryService, Scene: "booking", Page: "pages/booking/detail",
			Channels: []ChannelTemplate{sub("sbx-tmpl-booking-confirmed", false, bookingFields), oa(oaFields)}},
		{Name: ReasonCheckupReminder, Title: "体检提醒", Category: model.CategoryCare, Scene: "booking", Page: "pages/booking/detail",
			Channels: []ChannelTemplate{sub("sbx-tmpl-checkup-reminder", false, bookingFields), oa(oaFields)}},
		{Name: ReasonReportReady, Title: "报告已出", Category: model.CategoryService, Scene: "report", Page: "pages/report/detail",
			Channels: []ChannelTemplate{sub("sbx-tmpl-report-ready", false, map[string]string{"thing1": "title", "time2": "time", "thing3": "note"}), oa(oaFields)}},
		{Name: ReasonCriticalValue, Title: "重要检查结果提醒", Category: model.CategoryUrgent, Scene: "report", Page: "pages/report/detail",
			Channels: []ChannelTemplate{sub("sbx-tmpl-critical", true, map[string]string{"thing1": "title", "thing2": "note"}), oa(oaFields)}},
		{Name: ReasonSurveyInvite, Title: "满意度调查", Category: model.CategoryCare, Scene: "survey", Page: "pages/survey/answer",
			Channels: []ChannelTemplate{sub("sbx-tmpl-survey", false, map[string]string{"thing1": "title", "thing2": "note"}), oa(oaFields)}},
		{Name: ReasonAnnualRecheck, Title: "年度复查提醒", Category: model.CategoryCare, Scene: "care", Page: "pages/packages/list",
			Channels: []ChannelTemplate{sub("sbx-tmpl-care", false, map[string]string{"thing1": "title", "thing2": "note"}), oa(oaFields)}},
		{Name: ReasonBirthday, Title: "生日关怀", Category: model.CategoryCare, Scene: "care", Page: "pages/index/index",
			Channels: []ChannelTemplate{sub("sbx-tmpl-care", false, map[string]string{"thing1": "title", "thing2": "note"}), oa(oaFields)}},
		{Name: ReasonHoliday, Title: "节日关怀", Category: model.CategoryCare, Scene: "care", Page: "pages/index/index",
			Channels: []ChannelTemplate{sub("sbx-tmpl-care", false, map[string]string{"thing1": "title", "thing2": "note"}), oa(oaFields)}},
		{Name: ReasonNoShow, Title: "爽约回访", Category: model.CategoryCare, Scene: "booking", Page: "pages/packages/list",
			Channels: []ChannelTemplate{sub("sbx-tmpl-care", false, map[string]string{"thing1": "title", "thing2": "note"}), oa(oaFields)}},
		{Name: ReasonDoctorReply, Title: "医生回复提醒", Category: model.CategoryService, Scene: "chat", Page: "pages/chat/detail", NoticeOnceMinutes: 10, InOrder: true,
			// The reply itself while WeChat's window is open, else a notice.
			Channels: []ChannelTemplate{{Channel: ChannelCustomer}, sub("sbx-tmpl-doctor-reply", false, map[string]string{"thing1": "title", "thing2": "note"}), oa(oaFields)}},
		{Name: ReasonComplaintReply, Title: "投诉处理回复", Category: model.CategoryService, Scene: "care", Page: "pages/complaint/detail",
			Channels: []ChannelTemplate{sub("sbx-tmpl-care", false, map[string]string{"thing1": "title", "thing2": "note"}), oa(oaFields)}},
		{Name: ReasonPointsExpiry, Title: "积分到期提醒", Category: model.CategoryCare, Scene: "care", Page: "pages/points/index",
			Channels: []ChannelTemplate{sub("sbx-tmpl-care", false, map[string]string{"thing1": "title", "thing2": "note"}), oa(oaFields)}},
		// Marketing campaigns: a subscribe message only (never a template
		// message, which WeChat forbids for marketing), on the template the
		// campaign chose among these, filled with the campaign's data.
		{Name: ReasonCampaign, Title: "活动通知", Category: model.CategoryMarketing, Scene: "campaign", Page: "pages/packages/list", ChooseTemplate: true,
			Channels: []ChannelTemplate{sub("sbx-tmpl-marketing", false, nil), sub("sbx-tmpl-marketing-coupon", false, nil)}},
	}
}

var (
	fieldKey   = regexp.MustCompile(`^([a-z_]+?)(\d+)$`)
	notDigits  = regexp.MustCompile(`[^0-9.\-]`)
	notCharStr = regexp.MustCompile(`[^A-Za-z0-9_\-.: ]`)
)

// renderSubscribe fills a subscribe template's fields from params, keeping
// to WeChat's per-type rules (the key's prefix is the type): a thing is at
// most 20 characters, a phrase 5, a name 10, a time is "YYYY-MM-DD HH:MM".
func renderSubscribe(fields map[string]string, params map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(fields))
	for key, param := range fields {
		m := fieldKey.FindStringSubmatch(key)
		if m == nil {
			return nil, fmt.Errorf("template field %q has no type", key)
		}
		v := strings.TrimSpace(params[param])
		switch m[1] {
		case "thing":
			if v == "" {
				v = "-"
			}
			v = model.Truncate(v, 20)
		case "phrase", "short_thing":
			if v == "" {
				v = "-"
			}
			v = model.Truncate(v, 5)
		case "name":
			v = model.Truncate(v, 10)
		case "number":
			v = model.Truncate(notDigits.ReplaceAllString(v, ""), 32)
		case "character_string":
			v = model.Truncate(notCharStr.ReplaceAllString(v, ""), 32)
		case "time", "date":
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return nil, fmt.Errorf("template field %q needs param %q as an RFC 3339 time, got %q", key, param, v)
			}
			layout := "2006-01-02 15:04"
			if m[1] == "date" {
				layout = "2006-01-02"
			}
			v = t.In(model.Shanghai).Format(layout)
		case "amount":
			v = model.Truncate(v, 16)
		case "phone_number":
			v = model.Truncate(v, 17)
		case "symbol":
			v = model.Truncate(v, 5)
		default:
			return nil, fmt.Errorf("template field %q: unknown type %q", key, m[1])
		}
		out[key] = v
	}
	return out, nil
}

// renderTemplate fills an official-account template; its fields are free
// text, but times are shown in Asia/Shanghai and long text is shortened.
func renderTemplate(fields map[string]string, params map[string]string) map[string]string {
	out := make(map[string]string, len(fields))
	for key, param := range fields {
		v := strings.TrimSpace(params[param])
		if v == "" {
			v = "-"
		}
		if t, err := time.Parse(time.RFC3339, v); err == nil {
			v = t.In(model.Shanghai).Format("2006-01-02 15:04")
		}
		out[key] = model.Truncate(v, 200)
	}
	return out
}
