package service

import (
	"cmp"
	"context"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm/clause"

	"careloop/model"
)

// Errors of the tag catalogue.
var (
	ErrTagExists = model.NewError(model.KindConflict, "tag_exists", "已有同名标签")
	ErrBadTag    = model.NewError(model.KindRule, "invalid_tag", "标签名称、分类或类型不正确")
)

// Tags is the tag catalogue and the tagging of patients (客户画像).
type Tags struct {
	db    *model.DB
	audit *Audit
	now   func() time.Time
}

// NewTags returns the tag use cases.
func NewTags(db *model.DB, audit *Audit, now func() time.Time) *Tags {
	if now == nil {
		now = time.Now
	}
	return &Tags{db: db, audit: audit, now: now}
}

// TagInput describes a catalogue entry.
type TagInput struct {
	Name, Category, Kind, Description string
}

// List returns the catalogue, optionally one category.
func (s *Tags) List(ctx context.Context, by Principal, category string) ([]model.Tag, error) {
	if err := by.must(ActTagsRead); err != nil {
		return nil, err
	}
	q := s.db.Conn(ctx).Order("category, name")
	if category != "" {
		q = q.Where("category = ?", category)
	}
	var out []model.Tag
	return out, q.Find(&out).Error
}

// Create adds a catalogue entry.
func (s *Tags) Create(ctx context.Context, by Principal, in TagInput) (*model.Tag, error) {
	if err := by.must(ActTagsManage); err != nil {
		return nil, err
	}
	in.Name = strings.TrimSpace(in.Name)
	switch {
	case in.Name == "" || utf8.RuneCountInString(in.Name) > 32:
		return nil, ErrBadTag
	case in.Category != model.TagBasic && in.Category != model.TagExtended && in.Category != model.TagService && in.Category != model.TagFollowUp:
		return nil, ErrBadTag
	case in.Kind == "":
		in.Kind = model.TagFact
	}
	if in.Kind != model.TagFact && in.Kind != model.TagModel && in.Kind != model.TagPredictive {
		return nil, ErrBadTag
	}
	t := model.Tag{Name: in.Name, Category: in.Category, Kind: in.Kind, Description: model.Truncate(in.Description, 200)}
	if err := s.db.Conn(ctx).Create(&t).Error; err != nil {
		if model.IsDuplicate(err) {
			return nil, ErrTagExists
		}
		return nil, err
	}
	return &t, nil
}

// Delete removes a catalogue entry and takes it off every patient.
func (s *Tags) Delete(ctx context.Context, by Principal, id uint64) error {
	if err := by.must(ActTagsManage); err != nil {
		return err
	}
	if computed, err := isComputed(ctx, s.db, id); err != nil || computed {
		return cmp.Or(err, error(ErrComputedTag))
	}
	return s.db.InTx(ctx, func(ctx context.Context) error {
		res := s.db.Conn(ctx).Delete(&model.Tag{}, id)
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return model.ErrNotFound
		}
		return s.db.Conn(ctx).Where("tag_id = ?", id).Delete(&model.PatientTag{}).Error
	})
}

// Assign puts tag tagID on a patient. by is the staff member, or System.
// Assigning twice is harmless.
func (s *Tags) Assign(ctx context.Context, by Principal, patientID, tagID uint64) error {
	if err := by.must(ActPatientsTag); err != nil {
		return err
	}
	return s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.mustExist(ctx, patientID, tagID); err != nil {
			return err
		}
		pt := model.PatientTag{PatientID: patientID, TagID: tagID, AssignedBy: by.ID, AssignedAt: s.now()}
		if err := s.db.Conn(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&pt).Error; err != nil && !model.IsDuplicate(err) {
			return err
		}
		return s.audit.Record(ctx, by, AuditTagAdd, &patientID, "tag "+itoa(tagID))
	})
}

// Unassign takes a tag off a patient.
func (s *Tags) Unassign(ctx context.Context, by Principal, patientID, tagID uint64) error {
	if err := by.must(ActPatientsTag); err != nil {
		return err
	}
	if computed, err := isComputed(ctx, s.db, tagID); err != nil || computed {
		return cmp.Or(err, error(ErrComputedTag))
	}
	return s.db.InTx(ctx, func(ctx context.Context) error {
		res := s.db.Conn(ctx).Where("patient_id = ? AND tag_id = ?", patientID, tagID).Delete(&model.PatientTag{})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return model.ErrNotFound
		}
		return s.audit.Record(ctx, by, AuditTagRemove, &patientID, "tag "+itoa(tagID))
	})
}

func (s *Tags) mustExist(ctx context.Context, patientID, tagID uint64) error {
	var n int64
	if err := s.db.Conn(ctx).Model(&model.Patient{}).Where("id = ? AND erased_at IS NULL", patientID).Count(&n).Error; err != nil {
		return err
	}
	if n == 0 {
		return model.ErrNotFound.WithMessage("患者不存在")
	}
	if err := s.db.Conn(ctx).Model(&model.Tag{}).Where("id = ?", tagID).Count(&n).Error; err != nil {
		return err
	}
	if n == 0 {
		return model.ErrNotFound.WithMessage("标签不存在")
	}
	if computed, err := isComputed(ctx, s.db, tagID); err != nil || computed {
		return cmp.Or(err, error(ErrComputedTag))
	}
	return nil
}

// AssignedTag is a tag on a patient, with who put it there and when.
type AssignedTag struct {
	model.Tag
	AssignedBy uint64
	AssignedAt time.Time
}

// OfPatient lists a patient's tags.
func (s *Tags) OfPatient(ctx context.Context, patientID uint64) ([]AssignedTag, error) {
	var out []AssignedTag
	err := s.db.Conn(ctx).Table("tags").
		Select("tags.*, patient_tags.assigned_by, patient_tags.assigned_at").
		Joins("JOIN patient_tags ON patient_tags.tag_id = tags.id").
		Where("patient_tags.patient_id = ?", patientID).Order("tags.category, tags.name").Scan(&out).Error
	return out, err
}
