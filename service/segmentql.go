package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"careloop/model"
)

// The segment condition language (written out, with examples, in
// api/openapi.yaml under SegmentConditions): groups of conditions, the
// conditions of a group joined by the group's match (all = AND, any = OR),
// the groups joined by the top-level match. Each condition names a field,
// an operator and a value; within_days narrows the booking and report
// fields to the trailing days. A condition compiles to one SQL predicate on
// patients.id (an IN or NOT IN subquery), so a count is one query whatever
// the database.

// SegmentConditions is a segment's filter.
type SegmentConditions struct {
	Match  string         `json:"match"`
	Groups []SegmentGroup `json:"groups"`
}

// SegmentGroup is conditions joined by Match.
type SegmentGroup struct {
	Match      string             `json:"match"`
	Conditions []SegmentCondition `json:"conditions"`
}

// SegmentCondition is one test of a patient.
type SegmentCondition struct {
	Field      string          `json:"field"`
	Op         string          `json:"op"`
	Value      json.RawMessage `json:"value"`
	WithinDays int             `json:"within_days,omitempty"`
}

// Errors of the condition language.
var (
	ErrBadCondition         = model.NewError(model.KindRule, "invalid_condition", "筛选条件不正确")
	ErrHealthDataNotAllowed = model.NewError(model.KindRule, "health_data_not_allowed",
		"营销分群不能使用体检结果或健康档案等健康数据（敏感个人信息），请改建关怀分群")
)

// Limits of a segment's filter.
const (
	segMaxGroups     = 10
	segMaxConditions = 20
	segMaxValues     = 500
)

// segField describes one field: its operators, whether it is health data,
// whether within_days applies, and how it compiles.
type segField struct {
	ops    []string
	health bool
	within bool
	label  string // in Chinese, for messages
	build  func(q *segQuery, c SegmentCondition, v segValue) (string, []any, error)
}

// segValue is a condition's value read by its operator: a list (in, any,
// all, none), a range (gte, lte, between: Lo/Hi, nil for open) or a
// scalar (eq, has).
type segValue struct {
	list   []json.RawMessage
	lo, hi *int64
	scalar json.RawMessage
}

// segQuery is what compiling needs to know about the world.
type segQuery struct {
	ctx   context.Context
	db    *model.DB
	today string // YYYY-MM-DD, Asia/Shanghai
	now   time.Time
	hash  func(kind, value string) string
	// rfmRun is the latest finished RFM run (0: none), looked up once.
	rfmRun    uint64
	rfmLooked bool
}

// segFields is the language's vocabulary.
var segFields map[string]segField

func init() {
	segFields = map[string]segField{
		"gender":  {ops: []string{"eq", "in"}, label: "性别", build: segGender},
		"age":     {ops: []string{"gte", "lte", "between"}, label: "年龄", build: segAge},
		"region":  {ops: []string{"in"}, label: "地区", build: segRegion},
		"source":  {ops: []string{"eq", "in"}, label: "来源", build: segSource},
		"channel": {ops: []string{"in"}, label: "渠道", build: segChannel},
		"tag":     {ops: []string{"any", "all", "none"}, label: "标签", build: segTag},
		"level":   {ops: []string{"in"}, label: "会员等级", build: segLevel},
		"points":  {ops: []string{"gte", "lte", "between"}, label: "积分", build: segPoints},

		"rfm.tier":         {ops: []string{"in"}, label: "价值分层", build: segRFMTier},
		"rfm.r_score":      {ops: []string{"gte", "lte", "between"}, label: "R 分", build: segRFMNum("r_score", 1, 5)},
		"rfm.f_score":      {ops: []string{"gte", "lte", "between"}, label: "F 分", build: segRFMNum("f_score", 1, 5)},
		"rfm.m_score":      {ops: []string{"gte", "lte", "between"}, label: "M 分", build: segRFMNum("m_score", 1, 5)},
		"rfm.recency_days": {ops: []string{"gte", "lte", "between"}, label: "距上次体检天数（RFM）", build: segRFMNum("r", 0, 100000)},
		"rfm.frequency":    {ops: []string{"gte", "lte", "between"}, label: "体检次数（RFM）", build: segRFMNum("f", 0, 100000)},
		"rfm.monetary_fen": {ops: []string{"gte", "lte", "between"}, label: "消费金额（RFM）", build: segRFMNum("m", 0, 1<<40)},

		"booking.package":         {ops: []string{"any"}, within: true, label: "体检套餐", build: segBookingPackage},
		"booking.count":           {ops: []string{"gte", "lte", "between"}, within: true, label: "完成体检次数", build: segBookingCount(model.BookingCompleted)},
		"booking.no_shows":        {ops: []string{"gte", "lte", "between"}, within: true, label: "爽约次数", build: segBookingCount(model.BookingNoShow)},
		"booking.days_since_last": {ops: []string{"gte", "lte", "between"}, label: "距上次体检天数", build: segDaysSinceLast},
		"booking.upcoming":        {ops: []string{"eq"}, label: "有待到检预约", build: segUpcoming},

		"campaign.received":  {ops: []string{"eq", "any"}, within: true, label: "收到过营销活动", build: segCampaign("")},
		"campaign.opened":    {ops: []string{"eq", "any"}, within: true, label: "打开过营销活动", build: segCampaign("opened_at")},
		"campaign.converted": {ops: []string{"eq", "any"}, within: true, label: "营销活动转化", build: segCampaign("converted_at")},

		"wechat.follower": {ops: []string{"eq"}, label: "关注公众号", build: segFollower},
		"wechat.credit":   {ops: []string{"has"}, label: "订阅消息授权", build: segCredit},

		"report.abnormal":        {ops: []string{"eq"}, health: true, within: true, label: "体检异常", build: segReportFlag("abnormal_count > 0")},
		"report.critical":        {ops: []string{"eq"}, health: true, within: true, label: "危急值", build: segReportFlag("critical = ?")},
		"report.item":            {ops: []string{"any"}, health: true, within: true, label: "异常体检项目", build: segMark(HealthMarkItem)},
		"archive.past_history":   {ops: []string{"any"}, health: true, label: "既往史", build: segMark(HealthMarkPastHistory)},
		"archive.family_history": {ops: []string{"any"}, health: true, label: "家族史", build: segMark(HealthMarkFamilyHistory)},
		"archive.allergy":        {ops: []string{"any"}, health: true, label: "过敏史", build: segMark(HealthMarkAllergy)},
		"archive.medication":     {ops: []string{"any"}, health: true, label: "用药", build: segMark(HealthMarkMedication)},
	}
}

// SegmentFieldIsHealth reports whether field is health data.
func SegmentFieldIsHealth(field string) bool { return segFields[field].health }

// UsesHealthData reports whether any condition is on health data.
func (c SegmentConditions) UsesHealthData() bool {
	for _, g := range c.Groups {
		for _, x := range g.Conditions {
			if segFields[x.Field].health {
				return true
			}
		}
	}
	return false
}

func badCond(g, i int, field, format string, args ...any) error {
	return ErrBadCondition.WithMessage("第 %d 组第 %d 个条件：%s", g+1, i+1, fmt.Sprintf(format, args...)).
		WithDetails(map[string]any{"group": g, "index": i, "field": field})
}

// validate checks the shape and the purpose rule before anything is
// compiled: health data only in care segments.
func (c *SegmentConditions) validate(purpose string) error {
	if c.Match == "" {
		c.Match = "all"
	}
	if c.Match != "all" && c.Match != "any" {
		return ErrBadCondition.WithMessage("match 只能是 all（全部满足）或 any（满足其一）")
	}
	if len(c.Groups) > segMaxGroups {
		return ErrBadCondition.WithMessage("最多 %d 组条件", segMaxGroups)
	}
	for gi := range c.Groups {
		g := &c.Groups[gi]
		if g.Match == "" {
			g.Match = "all"
		}
		if g.Match != "all" && g.Match != "any" {
			return ErrBadCondition.WithMessage("第 %d 组：match 只能是 all 或 any", gi+1)
		}
		if len(g.Conditions) == 0 || len(g.Conditions) > segMaxConditions {
			return ErrBadCondition.WithMessage("第 %d 组：每组 1 至 %d 个条件", gi+1, segMaxConditions)
		}
		for i, x := range g.Conditions {
			f, ok := segFields[x.Field]
			if !ok {
				return badCond(gi, i, x.Field, "没有字段 %q", x.Field)
			}
			if f.health && purpose != model.SegmentCare {
				return ErrHealthDataNotAllowed.WithDetails(map[string]any{"group": gi, "index": i, "field": x.Field})
			}
			if !slices.Contains(f.ops, x.Op) {
				return badCond(gi, i, x.Field, "%s 不支持运算 %q（可用：%s）", f.label, x.Op, strings.Join(f.ops, "、"))
			}
			if x.WithinDays != 0 && (!f.within || x.WithinDays < 0 || x.WithinDays > 3650) {
				return badCond(gi, i, x.Field, "%s 不能限定天数，或天数超出 1–3650", f.label)
			}
		}
	}
	return nil
}

// readValue reads x's value as its operator wants it.
func readValue(gi, i int, x SegmentCondition) (segValue, error) {
	var v segValue
	raw := bytes.TrimSpace(x.Value)
	if len(raw) == 0 || string(raw) == "null" {
		return v, badCond(gi, i, x.Field, "缺少取值")
	}
	switch x.Op {
	case "in", "any", "all", "none":
		if err := json.Unmarshal(raw, &v.list); err != nil || len(v.list) == 0 {
			return v, badCond(gi, i, x.Field, "取值应为非空列表")
		}
		if len(v.list) > segMaxValues {
			return v, badCond(gi, i, x.Field, "列表最多 %d 项", segMaxValues)
		}
	case "gte", "lte":
		var n int64
		if err := json.Unmarshal(raw, &n); err != nil {
			return v, badCond(gi, i, x.Field, "取值应为整数")
		}
		if x.Op == "gte" {
			v.lo = &n
		} else {
			v.hi = &n
		}
	case "between":
		var r []int64
		if err := json.Unmarshal(raw, &r); err != nil || len(r) != 2 || r[0] > r[1] {
			return v, badCond(gi, i, x.Field, "取值应为 [下限, 上限] 两个整数，下限不大于上限")
		}
		v.lo, v.hi = &r[0], &r[1]
	default:
		v.scalar = raw
	}
	return v, nil
}

// compile turns the filter into one SQL predicate on the patients table
// aliased p (with its arguments).
func (c SegmentConditions) compile(q *segQuery) (string, []any, error) {
	var parts []string
	var args []any
	for gi, g := range c.Groups {
		var gparts []string
		for i, x := range g.Conditions {
			v, err := readValue(gi, i, x)
			if err != nil {
				return "", nil, err
			}
			sql, a, err := segFields[x.Field].build(q, x, v)
			if err != nil {
				if e, ok := model.AsError(err); ok && e.Code == ErrBadCondition.Code && e.Details == nil {
					return "", nil, badCond(gi, i, x.Field, "%s", e.Message)
				}
				return "", nil, err
			}
			gparts = append(gparts, "("+sql+")")
			args = append(args, a...)
		}
		join := " AND "
		if g.Match == "any" {
			join = " OR "
		}
		parts = append(parts, "("+strings.Join(gparts, join)+")")
	}
	if len(parts) == 0 {
		return "1=1", nil, nil
	}
	join := " AND "
	if c.Match == "any" {
		join = " OR "
	}
	return strings.Join(parts, join), args, nil
}

// condErr is a value error inside a build function (compile adds where).
func condErr(format string, args ...any) error {
	return ErrBadCondition.WithMessage(format, args...)
}

func strList(v segValue) ([]string, error) {
	out := make([]string, 0, len(v.list))
	for _, r := range v.list {
		var s string
		if err := json.Unmarshal(r, &s); err != nil {
			return nil, condErr("列表项应为文字")
		}
		s = strings.TrimSpace(s)
		if s == "" || utf8.RuneCountInString(s) > 64 {
			return nil, condErr("列表项不能为空或超过 64 字")
		}
		out = append(out, s)
	}
	return out, nil
}

func idList(v segValue) ([]uint64, error) {
	out := make([]uint64, 0, len(v.list))
	for _, r := range v.list {
		var n uint64
		if err := json.Unmarshal(r, &n); err != nil || n == 0 {
			return nil, condErr("列表项应为编号（正整数）")
		}
		out = append(out, n)
	}
	return out, nil
}

func boolValue(v segValue) (bool, error) {
	var b bool
	if err := json.Unmarshal(v.scalar, &b); err != nil {
		return false, condErr("取值应为 true 或 false")
	}
	return b, nil
}

// grouped wraps a grouped subquery (GROUP BY … HAVING) in a derived table:
// MariaDB cannot turn "IN (… GROUP BY …)" into a semi-join and would run it
// once per patient; a derived table is computed once.
func grouped(sub string) string { return "SELECT patient_id FROM (" + sub + ") AS g" }

// inOrNot is "p.id IN (sub)" or, for a false wanted, "p.id NOT IN (sub)".
func inOrNot(want bool, sub string) string {
	if want {
		return "p.id IN (" + sub + ")"
	}
	return "p.id NOT IN (" + sub + ")"
}

// rangeOK checks a range's bounds.
func rangeOK(v segValue, lo, hi int64) error {
	for _, p := range []*int64{v.lo, v.hi} {
		if p != nil && (*p < lo || *p > hi) {
			return condErr("取值应在 %d 至 %d 之间", lo, hi)
		}
	}
	return nil
}

// rangeSQL is "expr >= ? AND expr <= ?" for the bounds present.
func rangeSQL(expr string, v segValue) (string, []any) {
	var parts []string
	var args []any
	if v.lo != nil {
		parts = append(parts, expr+" >= ?")
		args = append(args, *v.lo)
	}
	if v.hi != nil {
		parts = append(parts, expr+" <= ?")
		args = append(args, *v.hi)
	}
	return strings.Join(parts, " AND "), args
}

// sinceDay is the first day of the trailing window of days, as YYYY-MM-DD.
func (q *segQuery) sinceDay(days int) string {
	d, _ := time.ParseInLocation(time.DateOnly, q.today, model.Shanghai)
	return d.AddDate(0, 0, -days+1).Format(time.DateOnly)
}

// daysBefore is the day n days before today, as YYYY-MM-DD.
func (q *segQuery) daysBefore(n int64) string {
	d, _ := time.ParseInLocation(time.DateOnly, q.today, model.Shanghai)
	return d.AddDate(0, 0, -int(n)).Format(time.DateOnly)
}

func segGender(_ *segQuery, c SegmentCondition, v segValue) (string, []any, error) {
	var vals []string
	if c.Op == "eq" {
		var s string
		if err := json.Unmarshal(v.scalar, &s); err != nil {
			return "", nil, condErr("性别应为 male、female 或 unknown")
		}
		vals = []string{s}
	} else {
		var err error
		if vals, err = strList(v); err != nil {
			return "", nil, err
		}
	}
	for _, s := range vals {
		if s != "male" && s != "female" && s != "unknown" {
			return "", nil, condErr("性别应为 male、female 或 unknown")
		}
	}
	return "p.gender IN ?", []any{vals}, nil
}

// segAge: age in whole years today (Asia/Shanghai). Birth dates are
// calendar dates stored as UTC midnight.
func segAge(q *segQuery, _ SegmentCondition, v segValue) (string, []any, error) {
	if err := rangeOK(v, 0, 150); err != nil {
		return "", nil, err
	}
	today, _ := time.Parse(time.DateOnly, q.today)
	parts := []string{"p.birth_date IS NOT NULL"}
	var args []any
	if v.lo != nil { // at least lo years old: born on or before today − lo years
		parts = append(parts, "p.birth_date <= ?")
		args = append(args, today.AddDate(-int(*v.lo), 0, 0))
	}
	if v.hi != nil { // at most hi: born after today − (hi+1) years
		parts = append(parts, "p.birth_date > ?")
		args = append(args, today.AddDate(-int(*v.hi)-1, 0, 0))
	}
	return strings.Join(parts, " AND "), args, nil
}

// segRegion matches GB/T 2260 codes by prefix: a province (11 or 110000),
// a city (1101 or 110100) or a county (110101).
func segRegion(_ *segQuery, _ SegmentCondition, v segValue) (string, []any, error) {
	codes, err := strList(v)
	if err != nil {
		return "", nil, err
	}
	var parts []string
	var args []any
	for _, code := range codes {
		for _, r := range code {
			if r < '0' || r > '9' {
				return "", nil, condErr("地区应为行政区划代码，如 11（北京）、3301（杭州）、330106")
			}
		}
		switch {
		case len(code) == 6 && strings.HasSuffix(code, "0000"):
			code = code[:2]
		case len(code) == 6 && strings.HasSuffix(code, "00"):
			code = code[:4]
		}
		if len(code) != 2 && len(code) != 4 && len(code) != 6 {
			return "", nil, condErr("地区应为行政区划代码，如 11（北京）、3301（杭州）、330106")
		}
		parts = append(parts, "p.region_code LIKE ?")
		args = append(args, code+"%")
	}
	return strings.Join(parts, " OR "), args, nil
}

func segSource(_ *segQuery, c SegmentCondition, v segValue) (string, []any, error) {
	var vals []string
	if c.Op == "eq" {
		var s string
		if err := json.Unmarshal(v.scalar, &s); err != nil || s == "" {
			return "", nil, condErr("来源应为文字")
		}
		vals = []string{s}
	} else {
		var err error
		if vals, err = strList(v); err != nil {
			return "", nil, err
		}
	}
	return "p.source IN ?", []any{vals}, nil
}

// segChannel: patients whose first touch was one of the channels (their
// source is the channel's QR scene), or who follow the official account
// through it.
func segChannel(q *segQuery, _ SegmentCondition, v segValue) (string, []any, error) {
	ids, err := idList(v)
	if err != nil {
		return "", nil, err
	}
	var scenes []string
	if err := q.db.Conn(q.ctx).Model(&model.Channel{}).Where("id IN ?", ids).Pluck("scene", &scenes).Error; err != nil {
		return "", nil, fmt.Errorf("channel scenes: %w", err)
	}
	if len(scenes) != len(slices.Compact(slices.Sorted(slices.Values(ids)))) {
		return "", nil, condErr("有渠道不存在")
	}
	return "p.source IN ? OR p.id IN (SELECT patient_id FROM followers WHERE scene IN ? AND patient_id IS NOT NULL)", []any{scenes, scenes}, nil
}

func segTag(_ *segQuery, c SegmentCondition, v segValue) (string, []any, error) {
	ids, err := idList(v)
	if err != nil {
		return "", nil, err
	}
	switch c.Op {
	case "any":
		return "p.id IN (SELECT patient_id FROM patient_tags WHERE tag_id IN ?)", []any{ids}, nil
	case "none":
		return "p.id NOT IN (SELECT patient_id FROM patient_tags WHERE tag_id IN ?)", []any{ids}, nil
	}
	ids = slices.Compact(slices.Sorted(slices.Values(ids)))
	return "p.id IN (" + grouped("SELECT patient_id FROM patient_tags WHERE tag_id IN ? GROUP BY patient_id HAVING COUNT(*) = ?") + ")", []any{ids, len(ids)}, nil
}

// segLevel: a level is a range of growth (from its threshold to the next
// level's); patients without a points account have growth 0.
func segLevel(q *segQuery, _ SegmentCondition, v segValue) (string, []any, error) {
	ids, err := idList(v)
	if err != nil {
		return "", nil, err
	}
	var levels []model.Level
	if err := q.db.Conn(q.ctx).Order("growth").Find(&levels).Error; err != nil {
		return "", nil, fmt.Errorf("levels: %w", err)
	}
	var parts []string
	var args []any
	found := 0
	for i, l := range levels {
		if !slices.Contains(ids, l.ID) {
			continue
		}
		found++
		lo := l.Growth
		var hi *int64
		if i+1 < len(levels) {
			h := levels[i+1].Growth - 1
			hi = &h
		}
		parts = append(parts, "("+growthRange("growth", &lo, hi)+")")
		args = append(args, boundsArgs(&lo, hi)...)
	}
	if found != len(slices.Compact(slices.Sorted(slices.Values(ids)))) {
		return "", nil, condErr("有会员等级不存在")
	}
	return strings.Join(parts, " OR "), args, nil
}

func segPoints(_ *segQuery, _ SegmentCondition, v segValue) (string, []any, error) {
	if err := rangeOK(v, 0, 1<<40); err != nil {
		return "", nil, err
	}
	return growthRange("balance", v.lo, v.hi), boundsArgs(v.lo, v.hi), nil
}

// growthRange is membership of a range of a points account column: with a
// positive lower bound, the patients whose account is in range; else (no
// account counts as 0) those whose account is not out of it. Both are
// uncorrelated subqueries.
func growthRange(col string, lo, hi *int64) string {
	switch {
	case lo != nil && *lo > 0 && hi != nil:
		return "p.id IN (SELECT patient_id FROM points_accounts WHERE " + col + " >= ? AND " + col + " <= ?)"
	case lo != nil && *lo > 0:
		return "p.id IN (SELECT patient_id FROM points_accounts WHERE " + col + " >= ?)"
	case hi != nil:
		return "p.id NOT IN (SELECT patient_id FROM points_accounts WHERE " + col + " > ?)"
	}
	return "1=1"
}

// boundsArgs are growthRange's arguments.
func boundsArgs(lo, hi *int64) []any {
	var out []any
	if lo != nil && *lo > 0 {
		out = append(out, *lo)
	}
	if hi != nil {
		out = append(out, *hi)
	}
	return out
}

// latestRFM is the latest finished RFM run (0 if none).
func (q *segQuery) latestRFM() (uint64, error) {
	if !q.rfmLooked {
		var ids []uint64
		if err := q.db.Conn(q.ctx).Model(&model.RFMRun{}).Where("status = ?", model.RFMDone).Order("id DESC").Limit(1).Pluck("id", &ids).Error; err != nil {
			return 0, fmt.Errorf("latest rfm run: %w", err)
		}
		if len(ids) == 1 {
			q.rfmRun = ids[0]
		}
		q.rfmLooked = true
	}
	return q.rfmRun, nil
}

func segRFMTier(q *segQuery, _ SegmentCondition, v segValue) (string, []any, error) {
	tiers, err := strList(v)
	if err != nil {
		return "", nil, err
	}
	for _, t := range tiers {
		if _, ok := model.TierNames[t]; !ok {
			return "", nil, condErr("价值分层应为 platinum、gold、iron 或 lead")
		}
	}
	run, err := q.latestRFM()
	if err != nil {
		return "", nil, err
	}
	return "p.id IN (SELECT patient_id FROM rfm_scores WHERE run_id = ? AND tier IN ?)", []any{run, tiers}, nil
}

func segRFMNum(col string, lo, hi int64) func(*segQuery, SegmentCondition, segValue) (string, []any, error) {
	return func(q *segQuery, _ SegmentCondition, v segValue) (string, []any, error) {
		if err := rangeOK(v, lo, hi); err != nil {
			return "", nil, err
		}
		run, err := q.latestRFM()
		if err != nil {
			return "", nil, err
		}
		cond, args := rangeSQL(col, v)
		return "p.id IN (SELECT patient_id FROM rfm_scores WHERE run_id = ? AND " + cond + ")", append([]any{run}, args...), nil
	}
}

// bookingsOf is the completed-booking (or other status) subquery, within
// the trailing days if asked.
func (q *segQuery) bookingsOf(status string, within int) (string, []any) {
	sql, args := "SELECT patient_id FROM bookings WHERE status = ?", []any{status}
	if within > 0 {
		sql += " AND date >= ? AND date <= ?"
		args = append(args, q.sinceDay(within), q.today)
	}
	return sql, args
}

func segBookingPackage(q *segQuery, c SegmentCondition, v segValue) (string, []any, error) {
	ids, err := idList(v)
	if err != nil {
		return "", nil, err
	}
	sub, args := q.bookingsOf(model.BookingCompleted, c.WithinDays)
	return "p.id IN (" + sub + " AND package_id IN ?)", append(args, ids), nil
}

// segBookingCount counts a patient's bookings in a status: "at least n"
// (n > 0) is membership of the patients with n; "at most n" is not being
// one of those with more.
func segBookingCount(status string) func(*segQuery, SegmentCondition, segValue) (string, []any, error) {
	return func(q *segQuery, c SegmentCondition, v segValue) (string, []any, error) {
		if err := rangeOK(v, 0, 10000); err != nil {
			return "", nil, err
		}
		if c.WithinDays == 0 { // all time: the visit summary
			col := "completed"
			if status == model.BookingNoShow {
				col = "no_shows"
			}
			return visitRange(col, v.lo, v.hi), boundsArgs(v.lo, v.hi), nil
		}
		sub, args := q.bookingsOf(status, c.WithinDays)
		var parts []string
		var all []any
		if v.lo != nil && *v.lo > 0 {
			parts = append(parts, "p.id IN ("+grouped(sub+" GROUP BY patient_id HAVING COUNT(*) >= ?")+")")
			all = append(append(all, args...), *v.lo)
		}
		if v.hi != nil {
			parts = append(parts, "p.id NOT IN ("+grouped(sub+" GROUP BY patient_id HAVING COUNT(*) > ?")+")")
			all = append(append(all, args...), *v.hi)
		}
		if len(parts) == 0 {
			return "1=1", nil, nil
		}
		return strings.Join(parts, " AND "), all, nil
	}
}

// visitRange is membership of a range of a visit-summary count (no row
// counts as 0), like growthRange.
func visitRange(col string, lo, hi *int64) string {
	switch {
	case lo != nil && *lo > 0 && hi != nil:
		return "p.id IN (SELECT patient_id FROM patient_visits WHERE " + col + " >= ? AND " + col + " <= ?)"
	case lo != nil && *lo > 0:
		return "p.id IN (SELECT patient_id FROM patient_visits WHERE " + col + " >= ?)"
	case hi != nil:
		return "p.id NOT IN (SELECT patient_id FROM patient_visits WHERE " + col + " > ?)"
	}
	return "1=1"
}

// segDaysSinceLast: days since the last completed checkup (patients never
// checked up do not match).
func segDaysSinceLast(q *segQuery, _ SegmentCondition, v segValue) (string, []any, error) {
	if err := rangeOK(v, 0, 100000); err != nil {
		return "", nil, err
	}
	conds := []string{"last_completed IS NOT NULL"}
	var args []any
	if v.lo != nil { // at least lo days ago: the last on or before today − lo
		conds = append(conds, "last_completed <= ?")
		args = append(args, q.daysBefore(*v.lo))
	}
	if v.hi != nil {
		conds = append(conds, "last_completed >= ?")
		args = append(args, q.daysBefore(*v.hi))
	}
	return "p.id IN (SELECT patient_id FROM patient_visits WHERE " + strings.Join(conds, " AND ") + ")", args, nil
}

func segUpcoming(q *segQuery, _ SegmentCondition, v segValue) (string, []any, error) {
	want, err := boolValue(v)
	if err != nil {
		return "", nil, err
	}
	return inOrNot(want, "SELECT patient_id FROM patient_visits WHERE upcoming_until >= ?"), []any{q.today}, nil
}

func segFollower(_ *segQuery, _ SegmentCondition, v segValue) (string, []any, error) {
	want, err := boolValue(v)
	if err != nil {
		return "", nil, err
	}
	return inOrNot(want, "SELECT patient_id FROM followers WHERE subscribed = ? AND patient_id IS NOT NULL"), []any{true}, nil
}

func segCredit(_ *segQuery, _ SegmentCondition, v segValue) (string, []any, error) {
	var tpl string
	if err := json.Unmarshal(v.scalar, &tpl); err != nil || tpl == "" || len(tpl) > 64 {
		return "", nil, condErr("取值应为订阅消息模板编号")
	}
	return "p.id IN (SELECT patient_id FROM subscribe_credits WHERE template_id = ? AND credits > 0)", []any{tpl}, nil
}

// segReportFlag: a visible (not retained) report, within the trailing days
// if asked, with abnormal findings or a critical value.
func segReportFlag(cond string) func(*segQuery, SegmentCondition, segValue) (string, []any, error) {
	return func(q *segQuery, c SegmentCondition, v segValue) (string, []any, error) {
		want, err := boolValue(v)
		if err != nil {
			return "", nil, err
		}
		sub := "SELECT patient_id FROM reports WHERE patient_id IS NOT NULL AND family_member_id IS NULL AND retained_until IS NULL AND " + cond
		var args []any
		if strings.Contains(cond, "?") {
			args = append(args, true)
		}
		if c.WithinDays > 0 {
			sub += " AND exam_date >= ?"
			args = append(args, q.sinceDay(c.WithinDays))
		}
		return inOrNot(want, sub), args, nil
	}
}

// segMark: a health mark (an abnormal report item, an archive entry) by
// name, matched through its keyed hash (the names are not stored).
func segMark(kind string) func(*segQuery, SegmentCondition, segValue) (string, []any, error) {
	return func(q *segQuery, c SegmentCondition, v segValue) (string, []any, error) {
		names, err := strList(v)
		if err != nil {
			return "", nil, err
		}
		hashes := make([]string, len(names))
		for i, n := range names {
			hashes[i] = q.hash(kind, n)
		}
		sub := "SELECT patient_id FROM health_marks WHERE kind = ? AND hash IN ?"
		args := []any{kind, hashes}
		if c.WithinDays > 0 {
			sub += " AND date >= ?"
			args = append(args, q.sinceDay(c.WithinDays))
		}
		return "p.id IN (" + sub + ")", args, nil
	}
}

// SegmentField describes a field of the condition language, for the
// console's editor.
type SegmentField struct {
	Field  string   `json:"field"`
	Label  string   `json:"label"`
	Ops    []string `json:"ops"`
	Health bool     `json:"health"`
	Within bool     `json:"within_days"`
}

// Fields lists the condition language's fields, sorted by name.
func (s *Segments) Fields(_ context.Context, by Principal) ([]SegmentField, error) {
	if err := by.must(ActSegments); err != nil {
		return nil, err
	}
	out := make([]SegmentField, 0, len(segFields))
	for name, f := range segFields {
		out = append(out, SegmentField{Field: name, Label: f.label, Ops: f.ops, Health: f.health, Within: f.within})
	}
	slices.SortFunc(out, func(a, b SegmentField) int { return strings.Compare(a.Field, b.Field) })
	return out, nil
}

// segCampaign: patients a campaign reached (eq true: any campaign; any: one
// of the campaigns listed), or who converted from one, within the
// trailing days if asked.
func segCampaign(col string) func(*segQuery, SegmentCondition, segValue) (string, []any, error) {
	return func(q *segQuery, c SegmentCondition, v segValue) (string, []any, error) {
		timeCol := "created_at"
		sub, args, want := "SELECT patient_id FROM campaign_recipients WHERE skip = ''", []any{}, true
		if col != "" {
			sub += " AND " + col + " IS NOT NULL"
			timeCol = col
		}
		if c.Op == "eq" {
			b, err := boolValue(v)
			if err != nil {
				return "", nil, err
			}
			want = b
		} else {
			ids, err := idList(v)
			if err != nil {
				return "", nil, err
			}
			sub += " AND campaign_id IN ?"
			args = append(args, ids)
		}
		if c.WithinDays > 0 {
			sub += " AND " + timeCol + " >= ?"
			args = append(args, q.now.AddDate(0, 0, -c.WithinDays).UTC())
		}
		return inOrNot(want, sub), args, nil
	}
}
