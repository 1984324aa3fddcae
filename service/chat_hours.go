package service

import (
	"context"
	"encoding/json"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm/clause"

	"careloop/model"
)

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
