package service

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"gorm.io/gorm/clause"

	"careloop/model"
)

// Health mark kinds (model.HealthMark.Kind), the fields of care segments
// that use them.
const (
	HealthMarkItem          = "item"
	HealthMarkPastHistory   = "past_history"
	HealthMarkFamilyHistory = "family_history"
	HealthMarkAllergy       = "allergy"
	HealthMarkMedication    = "medication"
)

// archiveMarkKinds are the kinds taken from the health archive.
var archiveMarkKinds = []string{HealthMarkPastHistory, HealthMarkFamilyHistory, HealthMarkAllergy, HealthMarkMedication}

// markReport replaces report r's marks with the abnormal items of its
// visible version (the patient's own reports only: a family member's
// findings are not the account holder's), in the caller's transaction.
func markReport(ctx context.Context, db *model.DB, sealer *Sealer, r *model.Report, content []byte) error {
	conn := db.Conn(ctx)
	if err := conn.Where("report_id = ?", r.ID).Delete(&model.HealthMark{}).Error; err != nil {
		return fmt.Errorf("marks of report %d: %w", r.ID, err)
	}
	if r.PatientID == nil || r.FamilyMemberID != nil || r.RetainedUntil != nil {
		return nil
	}
	var c reportContent
	if err := json.Unmarshal(content, &c); err != nil {
		return fmt.Errorf("report %d content: %w", r.ID, err)
	}
	var marks []model.HealthMark
	seen := map[string]bool{}
	add := func(name string) {
		if name == "" {
			return
		}
		h := HealthMarkHash(sealer, HealthMarkItem, name)
		if !seen[h] {
			seen[h] = true
			marks = append(marks, model.HealthMark{PatientID: *r.PatientID, Kind: HealthMarkItem, Hash: h, ReportID: r.ID, Date: r.ExamDate})
		}
	}
	for _, sec := range c.Sections {
		for _, it := range sec.Items {
			if it.Abnormal != "" || it.Critical {
				add(it.Name)
				add(it.Code)
			}
		}
	}
	if len(marks) == 0 {
		return nil
	}
	if err := conn.CreateInBatches(&marks, 200).Error; err != nil {
		return fmt.Errorf("mark report %d: %w", r.ID, err)
	}
	return nil
}

// markArchive replaces a patient's archive marks, in the caller's
// transaction.
func markArchive(ctx context.Context, db *model.DB, sealer *Sealer, patientID uint64, d HealthData, at time.Time) error {
	conn := db.Conn(ctx)
	if err := conn.Where("patient_id = ? AND report_id = 0 AND kind IN ?", patientID, archiveMarkKinds).Delete(&model.HealthMark{}).Error; err != nil {
		return fmt.Errorf("archive marks of patient %d: %w", patientID, err)
	}
	day := at.In(model.Shanghai).Format(time.DateOnly)
	var marks []model.HealthMark
	seen := map[string]bool{}
	for kind, list := range map[string][]string{HealthMarkPastHistory: d.PastHistory, HealthMarkFamilyHistory: d.FamilyHistory,
		HealthMarkAllergy: d.Allergies, HealthMarkMedication: d.Medications} {
		for _, name := range list {
			h := HealthMarkHash(sealer, kind, name)
			if name != "" && !seen[kind+h] {
				seen[kind+h] = true
				marks = append(marks, model.HealthMark{PatientID: patientID, Kind: kind, Hash: h, Date: day})
			}
		}
	}
	if len(marks) == 0 {
		return nil
	}
	if err := conn.CreateInBatches(&marks, 200).Error; err != nil {
		return fmt.Errorf("mark archive of patient %d: %w", patientID, err)
	}
	return nil
}

// healthMarksBuilt is the setting saying every mark was built under the
// current hash key (by the first start with health marks, and after every
// key rotation).
const healthMarksBuilt = "health_marks.built"

// RebuildHealthMarks rebuilds every mark from the sealed reports and
// archives (after a key rotation, or on the first start with marks), in
// batches; it may be stopped and run again.
func RebuildHealthMarks(ctx context.Context, db *model.DB, sealer *Sealer) error {
	var last uint64
	for {
		var rs []model.Report
		if err := db.Conn(ctx).Where("id > ? AND patient_id IS NOT NULL", last).Order("id").Limit(200).Find(&rs).Error; err != nil {
			return fmt.Errorf("reports to mark: %w", err)
		}
		for i := range rs {
			r := &rs[i]
			last = r.ID
			var v model.ReportVersion
			if err := db.Conn(ctx).Where("report_id = ? AND version = ?", r.ID, r.Version).Take(&v).Error; err != nil {
				continue // no visible version: nothing to mark
			}
			plain, err := sealer.Open(v.DataEnc)
			if err != nil {
				return fmt.Errorf("open report %d: %w", r.ID, err)
			}
			if err := db.InTx(ctx, func(ctx context.Context) error { return markReport(ctx, db, sealer, r, plain) }); err != nil {
				return err
			}
		}
		if len(rs) < 200 {
			break
		}
	}
	var lastP uint64
	for {
		var hs []model.HealthArchive
		if err := db.Conn(ctx).Where("patient_id > ?", lastP).Order("patient_id").Limit(200).Find(&hs).Error; err != nil {
			return fmt.Errorf("archives to mark: %w", err)
		}
		for _, h := range hs {
			lastP = h.PatientID
			plain, err := sealer.Open(h.DataEnc)
			if err != nil {
				return fmt.Errorf("open archive of patient %d: %w", h.PatientID, err)
			}
			var d HealthData
			if err := json.Unmarshal(plain, &d); err != nil {
				return fmt.Errorf("archive of patient %d: %w", h.PatientID, err)
			}
			if err := db.InTx(ctx, func(ctx context.Context) error { return markArchive(ctx, db, sealer, h.PatientID, d, h.UpdatedAt) }); err != nil {
				return err
			}
		}
		if len(hs) < 200 {
			break
		}
	}
	return db.Conn(ctx).Clauses(clause.OnConflict{UpdateAll: true}).
		Create(&model.Setting{Key: healthMarksBuilt, Value: markKeyCheck(sealer), UpdatedAt: time.Now()}).Error
}

// markKeyCheck fingerprints the hash key the marks are built under.
func markKeyCheck(s *Sealer) string { return s.Hash("health-marks|key-check") }

// HealthMarksCurrent reports whether the marks were built under the
// current hash key (false: RebuildHealthMarks is due).
func HealthMarksCurrent(ctx context.Context, db *model.DB, sealer *Sealer) (bool, error) {
	var st model.Setting
	err := db.Conn(ctx).Where("`key` = ?", healthMarksBuilt).Limit(1).Find(&st).Error
	if err != nil {
		return false, fmt.Errorf("health marks state: %w", err)
	}
	return st.Value == markKeyCheck(sealer), nil
}
