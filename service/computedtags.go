package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"

	"careloop/coord"
	"careloop/model"
)

// ErrComputedTag refuses typing a computed tag by hand.
var ErrComputedTag = model.NewError(model.KindRule, "computed_tag", "该标签由系统计算，不能手动添加、移除或删除")

// ComputedTags keeps the tags careloop computes rather than staff type
// (the seeds' model and predictive tags): the RFM tier of the latest run
// (model), "due for the annual re-check" and "at risk of lapsing"
// (predictive), and the members of segments mirrored as WeChat tags. They
// are recomputed after every RFM run and once a day (after 03:00 Shanghai,
// when the nightly RFM run has finished), on one instance at a time; each
// says how it is computed and when it last was.
type ComputedTags struct {
	db       *model.DB
	segments *Segments
	wxtags   *WxTags
	locker   coord.Locker
	log      *slog.Logger
	now      func() time.Time
	wake     doorbell
	// Every is how often Run looks whether a computation is due.
	Every time.Duration
}

// NewComputedTags returns the computed tags.
func NewComputedTags(db *model.DB, segments *Segments, wxtags *WxTags, locker coord.Locker, log *slog.Logger, now func() time.Time) *ComputedTags {
	if now == nil {
		now = time.Now
	}
	return &ComputedTags{db: db, segments: segments, wxtags: wxtags, locker: locker, log: log, now: now, wake: newDoorbell(), Every: time.Minute}
}

// builtinTag is one of the computed tags careloop defines.
type builtinTag struct {
	key, name, kind, rule string
	where                 func(q *segQuery) (string, []any, error)
}

// Computed tag keys.
const (
	TagKeyDueRecheck    = "due_recheck"
	TagKeyLapsing       = "lapsing"
	TagKeyLikelyRespond = "likely_respond"
)

// builtins are the model and predictive tags, in the order they are shown.
func (s *ComputedTags) builtins() []builtinTag {
	var out []builtinTag
	for _, tier := range []string{model.TierPlatinum, model.TierGold, model.TierIron, model.TierLead} {
		tier := tier
		out = append(out, builtinTag{key: "rfm:" + tier, name: "价值·" + model.TierNames[tier], kind: model.TagModel,
			rule: fmt.Sprintf("最近一次 RFM 评分中价值分层为「%s」（近 24 个月完成的体检：距上次天数、次数、实付金额各评 1–5 分，按总分分层）", model.TierNames[tier]),
			where: func(q *segQuery) (string, []any, error) {
				run, err := q.latestRFM()
				return "p.id IN (SELECT patient_id FROM rfm_scores WHERE run_id = ? AND tier = ?)", []any{run, tier}, err
			}})
	}
	out = append(out, builtinTag{key: TagKeyDueRecheck, name: "预测·待年度复检", kind: model.TagPredictive,
		rule: "距上次完成体检已满 365 天，且没有待到检的预约",
		where: func(q *segQuery) (string, []any, error) {
			c := SegmentConditions{Match: "all", Groups: []SegmentGroup{{Match: "all", Conditions: []SegmentCondition{
				{Field: "booking.days_since_last", Op: "gte", Value: []byte("365")},
				{Field: "booking.upcoming", Op: "eq", Value: []byte("false")},
			}}}}
			return c.compile(q)
		}})
	out = append(out, builtinTag{key: TagKeyLapsing, name: "预测·流失风险", kind: model.TagPredictive,
		rule: "距上次体检的天数超过本人平均体检间隔的 1.5 倍（只来过一次或间隔不足半年的按一年、半年计），且没有待到检的预约；三年以上未再来的视为已流失，不计入",
		where: func(q *segQuery) (string, []any, error) {
			day := "julianday"
			if q.db.Dialect() == "mysql" {
				day = "TO_DAYS"
			}
			gap := fmt.Sprintf("(%[1]s(MAX(date)) - %[1]s(MIN(date))) / (COUNT(*) - 1)", day)
			usual := fmt.Sprintf("CASE WHEN COUNT(*) < 2 THEN 365 WHEN %[1]s < 180 THEN 180 ELSE %[1]s END", gap)
			sub := fmt.Sprintf("SELECT patient_id FROM bookings WHERE status = ? GROUP BY patient_id HAVING MAX(date) >= ? AND %s(?) - %s(MAX(date)) > 1.5 * (%s)", day, day, usual)
			return "p.id IN (" + grouped(sub) + ") AND p.id NOT IN (SELECT patient_id FROM bookings WHERE status IN ? AND date >= ?)",
				[]any{model.BookingCompleted, q.daysBefore(3 * 365), q.today, []string{model.BookingBooked, model.BookingCheckedIn}, q.today}, nil
		}})
	out = append(out, builtinTag{key: TagKeyLikelyRespond, name: "预测·易响应营销", kind: model.TagPredictive,
		rule: "近一年内至少一次因营销活动转化（收到活动后在其目标期内预约或用券，按最后触达归因）",
		where: func(q *segQuery) (string, []any, error) {
			return "p.id IN (SELECT patient_id FROM campaign_recipients WHERE converted_at >= ?)", []any{q.now.AddDate(-1, 0, 0).UTC()}, nil
		}})
	return out
}

// ComputedTag is a computed tag as staff read it.
type ComputedTag struct {
	model.ComputedTag
	Name string
	Kind string
}

// List returns the computed tags with their rule and last computation.
func (s *ComputedTags) List(ctx context.Context, by Principal) ([]ComputedTag, error) {
	if err := by.must(ActTagsRead); err != nil {
		return nil, err
	}
	var out []ComputedTag
	if err := s.db.Conn(ctx).Table("computed_tags AS c").Select("c.*, t.name AS name, t.kind AS kind").
		Joins("JOIN tags t ON t.id = c.tag_id").Order("c.tag_id").Scan(&out).Error; err != nil {
		return nil, fmt.Errorf("computed tags: %w", err)
	}
	return out, nil
}

// RefreshNow asks for a computation at once.
func (s *ComputedTags) RefreshNow(ctx context.Context, by Principal) error {
	if err := by.must(ActTagsManage); err != nil {
		return err
	}
	if err := s.db.Conn(ctx).Model(&model.ComputedTag{}).Where("1 = 1").Update("computed_at", nil).Error; err != nil {
		return fmt.Errorf("computed tags: %w", err)
	}
	s.wake.ring()
	return nil
}

// Wake makes Run look at once.
func (s *ComputedTags) Wake() { s.wake.ring() }

// Run computes when due, every Every and when woken, until ctx ends.
func (s *ComputedTags) Run(ctx context.Context) error {
	return s.wake.serve(ctx, s.Every, s.log, "computed tags", func(ctx context.Context) (bool, error) {
		if err := s.marks(ctx); err != nil {
			return false, err
		}
		due, err := s.due(ctx)
		if err != nil || !due {
			return false, err
		}
		return false, s.Compute(ctx)
	})
}

// marks builds the health marks when they are not built under the current
// hash key (the first start with them, or a rotation that did not).
func (s *ComputedTags) marks(ctx context.Context) error {
	ok, err := HealthMarksCurrent(ctx, s.db, s.segments.sealer)
	if err != nil || ok {
		return err
	}
	return alone(ctx, s.locker, "health-marks", 30*time.Minute, func() error { return RebuildHealthMarks(ctx, s.db, s.segments.sealer) })
}

// due: a tag never computed, a finished RFM run newer than the last
// computation, or no computation since today's 03:00 in Shanghai.
func (s *ComputedTags) due(ctx context.Context) (bool, error) {
	db := s.db.Conn(ctx)
	var tags []model.ComputedTag
	if err := db.Find(&tags).Error; err != nil {
		return false, fmt.Errorf("computed tags: %w", err)
	}
	if len(tags) < len(s.builtins()) {
		return true, nil
	}
	var last time.Time
	for i, t := range tags {
		if t.ComputedAt == nil {
			return true, nil
		}
		if i == 0 || t.ComputedAt.Before(last) {
			last = *t.ComputedAt
		}
	}
	now := s.now().In(model.Shanghai)
	nightly := time.Date(now.Year(), now.Month(), now.Day(), 3, 0, 0, 0, model.Shanghai)
	if now.After(nightly) && last.Before(nightly) {
		return true, nil
	}
	var n int64
	if err := db.Model(&model.RFMRun{}).Where("status = ? AND finished_at > ?", model.RFMDone, last.UTC()).Count(&n).Error; err != nil {
		return false, fmt.Errorf("rfm runs since: %w", err)
	}
	return n > 0, nil
}

// Compute recomputes every computed tag (one instance at a time), then
// wakes the WeChat tag mirror.
func (s *ComputedTags) Compute(ctx context.Context) error {
	return alone(ctx, s.locker, "computed-tags", 30*time.Minute, func() error { return s.compute(ctx) })
}

func (s *ComputedTags) compute(ctx context.Context) error {
	q := s.segments.query(ctx)
	for _, b := range s.builtins() {
		id, err := s.ensure(ctx, b.key, b.name, b.kind, b.rule)
		if err != nil {
			return err
		}
		where, args, err := b.where(q)
		if err != nil {
			return err
		}
		if err := s.setMembers(ctx, id, where, args); err != nil {
			return fmt.Errorf("computed tag %s: %w", b.key, err)
		}
	}
	var segs []model.Segment
	if err := s.db.Conn(ctx).Where("tag_id IS NOT NULL").Find(&segs).Error; err != nil {
		return fmt.Errorf("mirrored segments: %w", err)
	}
	for _, m := range segs {
		seg, err := readSegment(m)
		if err != nil {
			return err
		}
		if err := s.computeSegment(ctx, seg); err != nil {
			return err
		}
	}
	s.wxtags.Wake()
	return nil
}

// computeSegment puts a mirrored segment's tag on its members now.
func (s *ComputedTags) computeSegment(ctx context.Context, seg *Segment) error {
	if seg.TagID == nil || seg.Health {
		return nil
	}
	where, args, err := s.segments.where(ctx, seg)
	if err != nil {
		return err
	}
	if err := s.setMembers(ctx, *seg.TagID, where, args); err != nil {
		return fmt.Errorf("segment %d tag: %w", seg.ID, err)
	}
	return nil
}

// ensure returns the tag of a computed key, creating it (and its catalogue
// entry) the first time.
func (s *ComputedTags) ensure(ctx context.Context, key, name, kind, rule string) (uint64, error) {
	var have model.ComputedTag
	err := s.db.Conn(ctx).Where("`key` = ?", key).Take(&have).Error
	if err == nil {
		if have.Rule != rule {
			if err := s.db.Conn(ctx).Model(&model.ComputedTag{}).Where("tag_id = ?", have.TagID).Update("rule", rule).Error; err != nil {
				return 0, fmt.Errorf("computed tag %s: %w", key, err)
			}
		}
		return have.TagID, nil
	}
	if !errors.Is(err, gorm.ErrRecordNotFound) {
		return 0, fmt.Errorf("computed tag %s: %w", key, err)
	}
	var id uint64
	err = s.db.InTx(ctx, func(ctx context.Context) error {
		t := model.Tag{Name: model.Truncate(name, 64), Category: model.TagExtended, Kind: kind, Description: model.Truncate(rule, 200)}
		if err := s.db.Conn(ctx).Create(&t).Error; model.IsDuplicate(err) {
			// A staff tag has the name: the computed one says it is the system's.
			t = model.Tag{Name: model.Truncate(name, 58) + "（系统）", Category: model.TagExtended, Kind: kind, Description: model.Truncate(rule, 200)}
			err = s.db.Conn(ctx).Create(&t).Error
			if err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		id = t.ID
		return s.db.Conn(ctx).Create(&model.ComputedTag{TagID: t.ID, Key: key, Rule: rule}).Error
	})
	if model.IsDuplicate(err) { // another instance made it meanwhile
		if err := s.db.Conn(ctx).Where("`key` = ?", key).Take(&have).Error; err != nil {
			return 0, fmt.Errorf("computed tag %s: %w", key, err)
		}
		return have.TagID, nil
	}
	if err != nil {
		return 0, fmt.Errorf("create computed tag %s: %w", key, err)
	}
	return id, nil
}

// drop removes a computed tag, from every patient and the catalogue.
func (s *ComputedTags) drop(ctx context.Context, tagID uint64) error {
	return s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		if err := db.Where("tag_id = ?", tagID).Delete(&model.PatientTag{}).Error; err != nil {
			return fmt.Errorf("drop computed tag %d: %w", tagID, err)
		}
		if err := db.Where("tag_id = ?", tagID).Delete(&model.ComputedTag{}).Error; err != nil {
			return fmt.Errorf("drop computed tag %d: %w", tagID, err)
		}
		return db.Delete(&model.Tag{}, tagID).Error
	})
}

// setMembers makes the patients matching where (not erased, not blocked)
// exactly the holders of tag id: the missing ones added in one statement,
// the others removed in batches.
func (s *ComputedTags) setMembers(ctx context.Context, id uint64, where string, args []any) error {
	db := s.db.Conn(ctx)
	now := s.now().UTC()
	members := "SELECT p.id FROM patients AS p WHERE p.erased_at IS NULL AND p.blocked_at IS NULL AND (" + where + ")"
	ins := "INSERT INTO patient_tags (patient_id, tag_id, assigned_by, assigned_at) SELECT p.id, ?, 0, ? FROM patients AS p WHERE p.erased_at IS NULL AND p.blocked_at IS NULL AND (" +
		where + ") AND p.id NOT IN (SELECT patient_id FROM patient_tags WHERE tag_id = ?)"
	if err := db.Exec(ins, append(append([]any{id, now}, args...), id)...).Error; err != nil {
		return fmt.Errorf("add members: %w", err)
	}
	var gone []uint64
	if err := db.Raw("SELECT patient_id FROM patient_tags WHERE tag_id = ? AND patient_id NOT IN ("+members+")", append([]any{id}, args...)...).
		Scan(&gone).Error; err != nil {
		return fmt.Errorf("former members: %w", err)
	}
	for start := 0; start < len(gone); start += 1000 {
		part := gone[start:min(start+1000, len(gone))]
		if err := db.Where("tag_id = ? AND patient_id IN ?", id, part).Delete(&model.PatientTag{}).Error; err != nil {
			return fmt.Errorf("remove members: %w", err)
		}
	}
	var n int64
	if err := db.Model(&model.PatientTag{}).Where("tag_id = ?", id).Count(&n).Error; err != nil {
		return fmt.Errorf("count members: %w", err)
	}
	return db.Model(&model.ComputedTag{}).Where("tag_id = ?", id).Updates(map[string]any{"members": n, "computed_at": now, "updated_at": now}).Error
}

// isComputed reports whether tag id is computed (and so not typed).
func isComputed(ctx context.Context, db *model.DB, id uint64) (bool, error) {
	var n int64
	if err := db.Conn(ctx).Model(&model.ComputedTag{}).Where("tag_id = ?", id).Count(&n).Error; err != nil {
		return false, fmt.Errorf("computed tag %d: %w", id, err)
	}
	return n > 0, nil
}
