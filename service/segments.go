package service

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"careloop/model"
)

// Errors of segments.
var (
	ErrSegmentExists = model.NewError(model.KindConflict, "segment_exists", "已有同名分群")
	ErrBadSegment    = model.NewError(model.KindInvalid, "invalid_segment", "分群名称或用途不正确")
	ErrHealthSegment = model.NewError(model.KindForbidden, "health_segment", "该分群使用了健康数据，只有医生和管理员可以查看和使用")
	ErrHealthMirror  = model.NewError(model.KindRule, "health_data_not_allowed", "使用健康数据的分群不能同步为微信标签（健康数据不得提供给第三方）")
)

// Audit actions of segments.
const (
	AuditSegmentChange = "segment.change"
	AuditSegmentExport = "segment.export"
	// AuditSegmentHealth records every use of a segment on health data
	// (preview, members, export), whoever uses it.
	AuditSegmentHealth = "segment.health_use"
)

// segmentSample is how many matching patients a preview shows.
const segmentSample = 10

// Segments are saved filters over patients (分群): built and counted live,
// listed, exported masked, mirrored as WeChat user tags, used by
// campaigns.
type Segments struct {
	db     *model.DB
	audit  *Audit
	sealer *Sealer
	wxtags *WxTags
	visits *Visits
	now    func() time.Time
	// liveIDs caches the live patients for counts (segmentsets.go).
	liveIDs liveCache
}

// NewSegments returns the segment use cases.
func NewSegments(db *model.DB, audit *Audit, sealer *Sealer, wxtags *WxTags, visits *Visits, now func() time.Time) *Segments {
	if now == nil {
		now = time.Now
	}
	return &Segments{db: db, audit: audit, sealer: sealer, wxtags: wxtags, visits: visits, now: now}
}

// SegmentInput is a segment as written.
type SegmentInput struct {
	Name       string
	Purpose    string
	Conditions SegmentConditions
}

// Segment is a segment as read.
type Segment struct {
	model.Segment
	Rule SegmentConditions
	// Health: the segment uses health data.
	Health bool
}

// HealthMarkHash is the keyed hash under which a health mark of a kind is
// stored and looked up (the name itself is never stored).
func HealthMarkHash(s *Sealer, kind, name string) string {
	return s.Hash("mark|" + kind + "|" + strings.ToLower(strings.Join(strings.Fields(name), " ")))
}

// query prepares compiling at the current time, the visit summaries
// brought up to date first (a few rows, unless another instance is at it).
func (s *Segments) query(ctx context.Context) *segQuery {
	if err := s.visits.Refresh(ctx); err != nil {
		s.visits.log.Warn("segments: refresh visit summaries", "err", err)
	}
	now := s.now()
	return &segQuery{ctx: ctx, db: s.db, now: now, today: now.In(model.Shanghai).Format(time.DateOnly),
		hash: func(kind, name string) string { return HealthMarkHash(s.sealer, kind, name) }}
}

// check validates a segment's filter for its purpose and the caller (only
// the roles that read health data may build on it); compile tells whether
// its values are good too (a count does that as it evaluates).
func (s *Segments) check(ctx context.Context, by Principal, purpose string, c *SegmentConditions, compile bool) error {
	if purpose != model.SegmentMarketing && purpose != model.SegmentCare {
		return ErrBadSegment.WithMessage("分群用途应为 marketing（营销）或 care（关怀）")
	}
	if err := c.validate(purpose); err != nil {
		return err
	}
	if c.UsesHealthData() {
		if err := by.must(ActReportsClinical); err != nil {
			return ErrHealthSegment
		}
	}
	if compile {
		_, _, err := c.compile(s.query(ctx))
		return err
	}
	return nil
}

// members is the query of the patients matching where (not erased, not
// blocked).
func (s *Segments) members(ctx context.Context, where string, args []any) *gorm.DB {
	return s.db.Conn(ctx).Table("patients AS p").Where("p.erased_at IS NULL AND p.blocked_at IS NULL").Where(where, args...)
}

// Preview counts the patients a filter matches and shows a sample of them.
func (s *Segments) Preview(ctx context.Context, by Principal, purpose string, c SegmentConditions) (int64, []model.Patient, error) {
	if err := by.must(ActSegments); err != nil {
		return 0, nil, err
	}
	if err := s.check(ctx, by, purpose, &c, false); err != nil {
		return 0, nil, err
	}
	set, err := s.evaluate(ctx, c)
	if err != nil {
		return 0, nil, err
	}
	n := set.count()
	sample := []model.Patient{}
	if ids := set.top(segmentSample); len(ids) > 0 {
		if err := s.db.Conn(ctx).Where("id IN ?", ids).Order("id DESC").Find(&sample).Error; err != nil {
			return 0, nil, fmt.Errorf("sample segment: %w", err)
		}
	}
	if c.UsesHealthData() {
		if err := s.audit.Record(ctx, by, AuditSegmentHealth, nil, fmt.Sprintf("preview: %d patients", n)); err != nil {
			return 0, nil, err
		}
	}
	return n, sample, nil
}

func (s *Segments) normalize(in *SegmentInput) error {
	in.Name = strings.TrimSpace(in.Name)
	if in.Name == "" || utf8.RuneCountInString(in.Name) > 32 {
		return ErrBadSegment.WithMessage("分群名称应为 1–32 个字")
	}
	return nil
}

// Create saves a segment.
func (s *Segments) Create(ctx context.Context, by Principal, in SegmentInput) (*Segment, error) {
	if err := by.must(ActSegments); err != nil {
		return nil, err
	}
	if err := s.normalize(&in); err != nil {
		return nil, err
	}
	if err := s.check(ctx, by, in.Purpose, &in.Conditions, true); err != nil {
		return nil, err
	}
	raw, err := json.Marshal(in.Conditions)
	if err != nil {
		return nil, fmt.Errorf("segment conditions: %w", err)
	}
	seg := model.Segment{Name: in.Name, Purpose: in.Purpose, Conditions: string(raw), StaffID: by.ID}
	err = s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Create(&seg).Error; err != nil {
			if model.IsDuplicate(err) {
				return ErrSegmentExists
			}
			return err
		}
		return s.audit.Record(ctx, by, AuditSegmentChange, nil, fmt.Sprintf("create segment %d %s (%s)", seg.ID, seg.Name, seg.Purpose))
	})
	if err != nil {
		return nil, err
	}
	return &Segment{Segment: seg, Rule: in.Conditions, Health: in.Conditions.UsesHealthData()}, nil
}

// Update changes a segment's name and filter (its purpose stays).
func (s *Segments) Update(ctx context.Context, by Principal, id uint64, in SegmentInput) (*Segment, error) {
	if err := by.must(ActSegments); err != nil {
		return nil, err
	}
	cur, err := s.Get(ctx, by, id)
	if err != nil {
		return nil, err
	}
	in.Purpose = cur.Purpose
	if err := s.normalize(&in); err != nil {
		return nil, err
	}
	if err := s.check(ctx, by, in.Purpose, &in.Conditions, true); err != nil {
		return nil, err
	}
	if cur.TagID != nil && in.Conditions.UsesHealthData() {
		return nil, ErrHealthMirror
	}
	raw, err := json.Marshal(in.Conditions)
	if err != nil {
		return nil, fmt.Errorf("segment conditions: %w", err)
	}
	err = s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Model(&model.Segment{}).Where("id = ?", id).
			Updates(map[string]any{"name": in.Name, "conditions": string(raw), "updated_at": s.now().UTC()}).Error; err != nil {
			if model.IsDuplicate(err) {
				return ErrSegmentExists
			}
			return err
		}
		return s.audit.Record(ctx, by, AuditSegmentChange, nil, fmt.Sprintf("update segment %d %s", id, in.Name))
	})
	if err != nil {
		return nil, err
	}
	return s.Get(ctx, by, id)
}

// Delete removes a segment (and its computed tag, if mirrored: stop the
// mirror first).
func (s *Segments) Delete(ctx context.Context, by Principal, id uint64) error {
	if err := by.must(ActSegments); err != nil {
		return err
	}
	seg, err := s.Get(ctx, by, id)
	if err != nil {
		return err
	}
	if seg.TagID != nil {
		return model.ErrConflict.WithMessage("该分群正同步为微信标签，请先停止同步")
	}
	return s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Delete(&model.Segment{}, id).Error; err != nil {
			return err
		}
		return s.audit.Record(ctx, by, AuditSegmentChange, nil, fmt.Sprintf("delete segment %d %s", id, seg.Name))
	})
}

func readSegment(m model.Segment) (*Segment, error) {
	out := &Segment{Segment: m}
	if err := json.Unmarshal([]byte(m.Conditions), &out.Rule); err != nil {
		return nil, fmt.Errorf("segment %d conditions: %w", m.ID, err)
	}
	out.Health = out.Rule.UsesHealthData()
	return out, nil
}

// Get returns a segment; one on health data only to the roles that may use
// health data.
func (s *Segments) Get(ctx context.Context, by Principal, id uint64) (*Segment, error) {
	if err := by.must(ActSegments); err != nil {
		return nil, err
	}
	var m model.Segment
	if err := s.db.Conn(ctx).Where("id = ?", id).Take(&m).Error; err != nil {
		return nil, model.NotFound(err)
	}
	seg, err := readSegment(m)
	if err != nil {
		return nil, err
	}
	if seg.Health && by.must(ActReportsClinical) != nil {
		return nil, ErrHealthSegment
	}
	return seg, nil
}

// List returns the segments, newest first (those on health data only to
// the roles that may use them), optionally of one purpose.
func (s *Segments) List(ctx context.Context, by Principal, purpose string) ([]Segment, error) {
	if err := by.must(ActSegments); err != nil {
		return nil, err
	}
	q := s.db.Conn(ctx).Order("id DESC").Limit(500)
	if purpose != "" {
		q = q.Where("purpose = ?", purpose)
	}
	var rows []model.Segment
	if err := q.Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("segments: %w", err)
	}
	health := by.must(ActReportsClinical) == nil
	out := make([]Segment, 0, len(rows))
	for _, m := range rows {
		seg, err := readSegment(m)
		if err != nil {
			return nil, err
		}
		if seg.Health && !health {
			continue
		}
		out = append(out, *seg)
	}
	return out, nil
}

// where compiles a saved segment's filter now.
func (s *Segments) where(ctx context.Context, seg *Segment) (string, []any, error) {
	return seg.Rule.compile(s.query(ctx))
}

// Count counts a segment's members now.
func (s *Segments) Count(ctx context.Context, by Principal, id uint64) (int64, error) {
	if err := by.must(ActSegments); err != nil {
		return 0, err
	}
	seg, err := s.Get(ctx, by, id)
	if err != nil {
		return 0, err
	}
	set, err := s.evaluate(ctx, seg.Rule)
	if err != nil {
		return 0, err
	}
	return set.count(), nil
}

// Patients lists a segment's members now, a page at a time.
func (s *Segments) Patients(ctx context.Context, by Principal, id uint64, cursor string, limit int) ([]model.Patient, string, error) {
	if err := by.must(ActSegments); err != nil {
		return nil, "", err
	}
	seg, err := s.Get(ctx, by, id)
	if err != nil {
		return nil, "", err
	}
	where, args, err := s.where(ctx, seg)
	if err != nil {
		return nil, "", err
	}
	rows, next, err := page(s.members(ctx, where, args).Select("p.*"), "p.id", cursor, limit, func(p model.Patient) uint64 { return p.ID })
	if err != nil {
		return nil, "", err
	}
	if seg.Health && cursor == "" {
		if err := s.audit.Record(ctx, by, AuditSegmentHealth, nil, fmt.Sprintf("members of segment %d %s", seg.ID, seg.Name)); err != nil {
			return nil, "", err
		}
	}
	return rows, next, nil
}

// SegmentExportRow is one exported member, masked: a segment export is for
// planning, not for contacting people outside careloop.
type SegmentExportRow struct {
	ID     uint64
	Name   string // 张*三
	Gender string
	Age    string
	Region string
	Phone  string // 138****5678
	Tier   string
}

// Export writes every member, masked, to each (in id order), audited.
func (s *Segments) Export(ctx context.Context, by Principal, id uint64, each func(SegmentExportRow) error) (int, error) {
	if err := by.must(ActSegments); err != nil {
		return 0, err
	}
	seg, err := s.Get(ctx, by, id)
	if err != nil {
		return 0, err
	}
	where, args, err := s.where(ctx, seg)
	if err != nil {
		return 0, err
	}
	run, err := s.query(ctx).latestRFM()
	if err != nil {
		return 0, err
	}
	today := s.now().In(model.Shanghai)
	n := 0
	var last uint64
	for {
		var rows []struct {
			model.Patient
			Tier *string
		}
		if err := s.members(ctx, where, args).Select("p.*, (SELECT tier FROM rfm_scores r WHERE r.run_id = ? AND r.patient_id = p.id) AS tier", run).
			Where("p.id > ?", last).Order("p.id").Limit(1000).Scan(&rows).Error; err != nil {
			return n, fmt.Errorf("export segment %d: %w", id, err)
		}
		for _, r := range rows {
			out := SegmentExportRow{ID: r.ID, Name: maskName(r.Name), Gender: genderName(r.Gender), Region: r.Region,
				Phone: MaskPhone(s.sealer.OpenString(r.PhoneEnc))}
			if r.BirthDate != nil {
				out.Age = fmt.Sprint(ageOn(*r.BirthDate, today))
			}
			if r.Tier != nil {
				out.Tier = model.TierNames[*r.Tier]
			}
			if err := each(out); err != nil {
				return n, err
			}
			n++
			last = r.ID
		}
		if len(rows) < 1000 {
			break
		}
	}
	action := AuditSegmentExport
	if seg.Health {
		action = AuditSegmentHealth
	}
	if err := s.audit.Record(ctx, by, action, nil, fmt.Sprintf("export segment %d %s: %d patients", seg.ID, seg.Name, n)); err != nil {
		return n, err
	}
	return n, nil
}

func genderName(g string) string {
	switch g {
	case "male":
		return "男"
	case "female":
		return "女"
	}
	return ""
}

// Mirror starts (on) or stops mirroring a segment as a WeChat user tag: its
// members carry a computed tag (kept up to date by the computed-tags job)
// and that tag is mirrored at WeChat. Segments on health data are never
// mirrored.
func (s *Segments) Mirror(ctx context.Context, by Principal, id uint64, on bool, tags *ComputedTags) (*Segment, error) {
	if err := by.must(ActOAManage); err != nil {
		return nil, err
	}
	seg, err := s.Get(ctx, by, id)
	if err != nil {
		return nil, err
	}
	if on && seg.Health {
		return nil, ErrHealthMirror
	}
	if !on {
		if seg.TagID == nil {
			return seg, nil
		}
		if _, err := s.wxtags.Mirror(ctx, by, *seg.TagID, false); err != nil {
			return nil, err
		}
		if err := tags.drop(ctx, *seg.TagID); err != nil {
			return nil, err
		}
		if err := s.db.Conn(ctx).Model(&model.Segment{}).Where("id = ?", id).Update("tag_id", nil).Error; err != nil {
			return nil, fmt.Errorf("segment %d: %w", id, err)
		}
		return s.Get(ctx, by, id)
	}
	if seg.TagID == nil {
		tagID, err := tags.ensure(ctx, segmentTagKey(id), "分群·"+seg.Name, model.TagModel, fmt.Sprintf("分群「%s」的成员，随分群条件每日重新计算", seg.Name))
		if err != nil {
			return nil, err
		}
		if err := s.db.Conn(ctx).Model(&model.Segment{}).Where("id = ?", id).Update("tag_id", tagID).Error; err != nil {
			return nil, fmt.Errorf("segment %d: %w", id, err)
		}
		seg.TagID = &tagID
	}
	if err := tags.computeSegment(ctx, seg); err != nil {
		return nil, err
	}
	if _, err := s.wxtags.Mirror(ctx, by, *seg.TagID, true); err != nil {
		return nil, err
	}
	if err := s.audit.Record(ctx, by, AuditSegmentChange, nil, fmt.Sprintf("mirror segment %d as tag %d", id, *seg.TagID)); err != nil {
		return nil, err
	}
	return seg, nil
}

func segmentTagKey(id uint64) string { return fmt.Sprintf("segment:%d", id) }

// maskName keeps a name's first and last characters: 张*三, 李*.
func maskName(n string) string {
	r := []rune(strings.TrimSpace(n))
	switch len(r) {
	case 0:
		return ""
	case 1:
		return "*"
	case 2:
		return string(r[0]) + "*"
	}
	return string(r[0]) + strings.Repeat("*", len(r)-2) + string(r[len(r)-1])
}
