package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/model"
)

// PatientData carries out, over model.PatientRegistry, what happens to
// everything careloop holds about one patient: merging two records of one
// person, the data export and erasure. A table added to the registry gets
// the generic rule of its entry; the tables whose rule needs more (combining
// unique rows, cancelling bookings, anonymising texts) have their step here,
// and a registry entry whose rule needs a step that is missing fails.
type PatientData struct {
	db       *model.DB
	sealer   *Sealer
	files    FileStore
	bookings *Bookings
	log      *slog.Logger
	now      func() time.Time
}

// NewPatientData returns the patient-data use case.
func NewPatientData(db *model.DB, sealer *Sealer, files FileStore, bookings *Bookings, log *slog.Logger, now func() time.Time) *PatientData {
	if now == nil {
		now = time.Now
	}
	return &PatientData{db: db, sealer: sealer, files: files, bookings: bookings, log: log, now: now}
}

// registryRows selects entry e's rows of patient id.
func registryRows(db *gorm.DB, e model.PatientData, id uint64) *gorm.DB {
	q := db.Model(e.Model)
	if e.Column != "" {
		q = q.Where(e.Column+" = ?", id)
	} else {
		q = q.Where(e.Parent, id)
	}
	if e.Where != "" {
		q = q.Where(e.Where)
	}
	return q
}

// CountRows counts, per table, the rows that refer to patient id (tests
// check merges and erasures with it).
func (s *PatientData) CountRows(ctx context.Context, id uint64) (map[string]int64, error) {
	db := s.db.Conn(ctx)
	out := map[string]int64{}
	for _, e := range model.PatientRegistry() {
		var n int64
		if err := registryRows(db, e, id).Count(&n).Error; err != nil {
			return nil, fmt.Errorf("count %s: %w", s.db.TableOf(e.Model), err)
		}
		out[s.db.TableOf(e.Model)] = n
	}
	return out, nil
}

// ---- merge ----

// mergeStep combines or prepares one table's rows of self for owner, inside
// the merge's transaction.
type mergeStep func(ctx context.Context, db *gorm.DB, self, owner *model.Patient) error

func (s *PatientData) mergeSteps() map[string]mergeStep {
	return map[string]mergeStep{
		"health_archives":     mergeArchive,
		"patient_tags":        mergeTags,
		"subscribe_credits":   mergeCredits,
		"notify_preferences":  mergePreferences,
		"points_accounts":     s.mergePoints,
		"bookings":            s.prepareBookings,
		"survey_invites":      prepareInvites,
		"conversations":       s.prepareConversations,
		"article_reads":       mergeArticleReads,
		"rfm_scores":          mergeRFMScores,
		"health_marks":        s.mergeHealthMarks,
		"campaign_recipients": mergeCampaignRecipients,
		"patient_visits":      s.mergeVisits,
	}
}

// Merge moves everything patient selfID holds to ownerID, combining what
// must stay unique by the registry's rules, and removes selfID, all in one
// transaction (the caller's, when ctx carries one). Both patient rows are
// locked by primary key in id order, so concurrent merges cannot deadlock.
// It returns the surviving patient.
func (s *PatientData) Merge(ctx context.Context, selfID, ownerID uint64) (*model.Patient, error) {
	var out model.Patient
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		var pair []model.Patient
		if err := db.Clauses(clause.Locking{Strength: "UPDATE"}).Where("id IN ?", []uint64{selfID, ownerID}).
			Order("id").Find(&pair).Error; err != nil {
			return fmt.Errorf("lock patients %d and %d: %w", selfID, ownerID, err)
		}
		var self, owner *model.Patient
		for i := range pair {
			switch pair[i].ID {
			case selfID:
				self = &pair[i]
			case ownerID:
				owner = &pair[i]
			}
		}
		if self == nil {
			return model.ErrNotFound
		}
		if owner == nil || owner.OpenID != nil {
			return ErrPhoneTaken // claimed by another WeChat user meanwhile
		}
		if owner.IDCardHash != nil && self.IDCardHash != nil && *owner.IDCardHash != *self.IDCardHash {
			return ErrIDCardConflict // two people, one phone: staff must look
		}
		steps := s.mergeSteps()
		for _, e := range model.PatientRegistry() {
			table := s.db.TableOf(e.Model)
			if table == "patients" {
				continue // the identity moves last, below
			}
			step := steps[table]
			if e.Merge == model.MergeCombine && step == nil {
				return fmt.Errorf("merge %s: no step for its rule", table)
			}
			if step != nil {
				if err := step(ctx, db, self, owner); err != nil {
					return fmt.Errorf("merge %s of patient %d into %d: %w", table, self.ID, owner.ID, err)
				}
			}
			if e.Merge == model.MergeMove {
				if err := registryRows(db, e, self.ID).Update(e.Column, owner.ID).Error; err != nil {
					return fmt.Errorf("move %s of patient %d to %d: %w", table, self.ID, owner.ID, err)
				}
			}
		}
		// The identity last: nothing refers to self any more.
		if err := s.mergeIdentity(ctx, db, self, owner); err != nil {
			return fmt.Errorf("merge identity of patient %d into %d: %w", self.ID, owner.ID, err)
		}
		return db.Where("id = ?", owner.ID).Take(&out).Error
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// mergeIdentity gives self's WeChat identity to owner, fills what owner
// lacks from self, and removes self.
func (s *PatientData) mergeIdentity(_ context.Context, db *gorm.DB, self, owner *model.Patient) error {
	// Free the unique openid (and ID card) first, then give them to owner.
	if err := db.Model(&model.Patient{}).Where("id = ?", self.ID).Updates(map[string]any{"open_id": nil, "union_id": nil, "id_card_hash": nil}).Error; err != nil {
		return err
	}
	upd := map[string]any{"open_id": self.OpenID}
	if owner.IDCardHash == nil && self.IDCardHash != nil {
		upd["id_card_hash"], upd["id_card_enc"], upd["id_card_mask"] = self.IDCardHash, self.IDCardEnc, self.IDCardMask
	}
	if owner.RegionCode == "" && self.RegionCode != "" {
		upd["region_code"] = self.RegionCode
	}
	if owner.UnionID == nil {
		upd["union_id"] = self.UnionID
	}
	if owner.Source == "" && self.Source != "" {
		upd["source"] = self.Source
	}
	if owner.Name == "" && self.Name != "" {
		upd["name"] = self.Name
	}
	if owner.Gender == "unknown" && self.Gender != "unknown" && self.Gender != "" {
		upd["gender"] = self.Gender
	}
	if owner.BirthDate == nil && self.BirthDate != nil {
		upd["birth_date"] = self.BirthDate
	}
	if owner.Region == "" && self.Region != "" {
		upd["region"] = self.Region
	}
	if err := db.Model(&model.Patient{}).Where("id = ?", owner.ID).Updates(upd).Error; err != nil {
		return err
	}
	return db.Delete(&model.Patient{}, self.ID).Error
}

// mergeArchive keeps the archive updated last.
func mergeArchive(_ context.Context, db *gorm.DB, self, owner *model.Patient) error {
	var hs []model.HealthArchive
	if err := db.Where("patient_id IN ?", []uint64{self.ID, owner.ID}).Find(&hs).Error; err != nil {
		return err
	}
	if len(hs) < 2 {
		return db.Model(&model.HealthArchive{}).Where("patient_id = ?", self.ID).Update("patient_id", owner.ID).Error
	}
	loser := owner.ID
	if hs[0].UpdatedAt.Equal(hs[1].UpdatedAt) || (hs[0].PatientID == owner.ID) == hs[0].UpdatedAt.After(hs[1].UpdatedAt) {
		loser = self.ID
	}
	if err := db.Where("patient_id = ?", loser).Delete(&model.HealthArchive{}).Error; err != nil {
		return err
	}
	return db.Model(&model.HealthArchive{}).Where("patient_id = ?", self.ID).Update("patient_id", owner.ID).Error
}

// mergeVisits recomputes the surviving record's visit summary from the
// bookings that moved to it (bookings merge before this step).
func (s *PatientData) mergeVisits(ctx context.Context, db *gorm.DB, self, owner *model.Patient) error {
	if err := db.Where("patient_id = ?", self.ID).Delete(&model.PatientVisit{}).Error; err != nil {
		return err
	}
	return recomputeVisits(ctx, db, []uint64{owner.ID}, s.now())
}

// mergeCampaignRecipients keeps the surviving record's row of a campaign
// that reached both (the rest move with the generic step).
func mergeCampaignRecipients(_ context.Context, db *gorm.DB, self, owner *model.Patient) error {
	if err := db.Where("patient_id = ? AND campaign_id IN (SELECT campaign_id FROM (SELECT campaign_id FROM campaign_recipients WHERE patient_id = ?) AS o)", self.ID, owner.ID).
		Delete(&model.CampaignRecipient{}).Error; err != nil {
		return err
	}
	return db.Model(&model.CampaignRecipient{}).Where("patient_id = ?", self.ID).Update("patient_id", owner.ID).Error
}

// mergeHealthMarks moves the report marks (their reports moved) and
// rebuilds the archive marks from the archive that survived (mergeArchive
// ran before).
func (s *PatientData) mergeHealthMarks(ctx context.Context, db *gorm.DB, self, owner *model.Patient) error {
	if err := db.Model(&model.HealthMark{}).Where("patient_id = ? AND report_id <> 0", self.ID).Update("patient_id", owner.ID).Error; err != nil {
		return err
	}
	if err := db.Where("patient_id IN ? AND report_id = 0", []uint64{self.ID, owner.ID}).Delete(&model.HealthMark{}).Error; err != nil {
		return err
	}
	var h model.HealthArchive
	if err := db.Where("patient_id = ?", owner.ID).Limit(1).Find(&h).Error; err != nil || h.PatientID == 0 {
		return err
	}
	plain, err := s.sealer.Open(h.DataEnc)
	if err != nil {
		return fmt.Errorf("open archive of patient %d: %w", owner.ID, err)
	}
	var d HealthData
	if err := json.Unmarshal(plain, &d); err != nil {
		return fmt.Errorf("archive of patient %d: %w", owner.ID, err)
	}
	return markArchive(ctx, s.db, s.sealer, owner.ID, d, h.UpdatedAt)
}

// mergeTags keeps the union; a tag on both keeps owner's assignment.
func mergeTags(_ context.Context, db *gorm.DB, self, owner *model.Patient) error {
	if err := db.Where("patient_id = ? AND tag_id IN (SELECT tag_id FROM patient_tags WHERE patient_id = ?)", self.ID, owner.ID).
		Delete(&model.PatientTag{}).Error; err != nil {
		return err
	}
	return db.Model(&model.PatientTag{}).Where("patient_id = ?", self.ID).Update("patient_id", owner.ID).Error
}

// mergeArticleReads keeps owner's reading of an article both have read
// (the counters stay as they are: a reader counted twice is rare and
// harmless) and moves the rest.
func mergeArticleReads(_ context.Context, db *gorm.DB, self, owner *model.Patient) error {
	if err := db.Where("patient_id = ? AND article_id IN (SELECT article_id FROM (SELECT article_id FROM article_reads WHERE patient_id = ?) AS o)", self.ID, owner.ID).
		Delete(&model.ArticleRead{}).Error; err != nil {
		return err
	}
	return db.Model(&model.ArticleRead{}).Where("patient_id = ?", self.ID).Update("patient_id", owner.ID).Error
}

// mergeRFMScores keeps owner's score of a run that scored both and moves
// the rest.
func mergeRFMScores(_ context.Context, db *gorm.DB, self, owner *model.Patient) error {
	if err := db.Where("patient_id = ? AND run_id IN (SELECT run_id FROM (SELECT run_id FROM rfm_scores WHERE patient_id = ?) AS o)", self.ID, owner.ID).
		Delete(&model.RFMScore{}).Error; err != nil {
		return err
	}
	return db.Model(&model.RFMScore{}).Where("patient_id = ?", self.ID).Update("patient_id", owner.ID).Error
}

// mergeCredits adds self's credits of a template to owner's.
func mergeCredits(_ context.Context, db *gorm.DB, self, owner *model.Patient) error {
	var cs []model.SubscribeCredit
	if err := db.Where("patient_id = ?", self.ID).Find(&cs).Error; err != nil {
		return err
	}
	for _, c := range cs {
		res := db.Model(&model.SubscribeCredit{}).Where("patient_id = ? AND template_id = ?", owner.ID, c.TemplateID).
			Update("credits", gorm.Expr("credits + ?", c.Credits))
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			if err := db.Create(&model.SubscribeCredit{PatientID: owner.ID, TemplateID: c.TemplateID, Credits: c.Credits}).Error; err != nil {
				return err
			}
		}
	}
	return db.Where("patient_id = ?", self.ID).Delete(&model.SubscribeCredit{}).Error
}

// mergePreferences keeps, per category, the choice made last.
func mergePreferences(_ context.Context, db *gorm.DB, self, owner *model.Patient) error {
	var ps []model.NotifyPreference
	if err := db.Where("patient_id = ?", self.ID).Find(&ps).Error; err != nil {
		return err
	}
	for _, p := range ps {
		var theirs model.NotifyPreference
		err := db.Where("patient_id = ? AND category = ?", owner.ID, p.Category).Take(&theirs).Error
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			err = db.Create(&model.NotifyPreference{PatientID: owner.ID, Category: p.Category, OptOut: p.OptOut, UpdatedAt: p.UpdatedAt}).Error
		case err == nil && p.UpdatedAt.After(theirs.UpdatedAt):
			err = db.Model(&theirs).Where("patient_id = ? AND category = ?", owner.ID, p.Category).
				Updates(map[string]any{"opt_out": p.OptOut, "updated_at": p.UpdatedAt}).Error
		}
		if err != nil {
			return err
		}
	}
	return db.Where("patient_id = ?", self.ID).Delete(&model.NotifyPreference{}).Error
}

// mergePoints adds self's balance and growth to owner's account and records
// it in owner's ledger; the ledger entries themselves move afterwards.
func (s *PatientData) mergePoints(_ context.Context, db *gorm.DB, self, owner *model.Patient) error {
	var acc model.PointsAccount
	err := db.Where("patient_id = ?", self.ID).Take(&acc).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	res := db.Model(&model.PointsAccount{}).Where("patient_id = ?", owner.ID).
		Updates(map[string]any{"balance": gorm.Expr("balance + ?", acc.Balance), "growth": gorm.Expr("growth + ?", acc.Growth)})
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		if err := db.Create(&model.PointsAccount{PatientID: owner.ID, Balance: acc.Balance, Growth: acc.Growth}).Error; err != nil {
			return err
		}
	}
	if err := db.Where("patient_id = ?", self.ID).Delete(&model.PointsAccount{}).Error; err != nil {
		return err
	}
	return db.Create(&model.PointsEntry{PatientID: owner.ID, Kind: model.PointsMerge, Amount: 0,
		Reason:         fmt.Sprintf("合并自患者 %d（积分 %d，成长值 %d）", self.ID, acc.Balance, acc.Growth),
		Ref:            fmt.Sprintf("patient-%d", self.ID),
		IdempotencyKey: fmt.Sprintf("merge-%d-%d", self.ID, owner.ID)}).Error
}

// prepareBookings cancels self's bookings on days owner already has one,
// keeps idempotency keys unique per patient and re-keys the person.
func (s *PatientData) prepareBookings(ctx context.Context, db *gorm.DB, self, owner *model.Patient) error {
	selfKey, ownerKey := fmt.Sprintf("p:%d", self.ID), fmt.Sprintf("p:%d", owner.ID)
	var clash []model.Booking
	if err := db.Where("person_key = ? AND active_day IN (SELECT active_day FROM bookings WHERE person_key = ? AND active_day IS NOT NULL)", selfKey, ownerKey).
		Find(&clash).Error; err != nil {
		return err
	}
	for i := range clash {
		if err := s.bookings.cancelTx(ctx, &clash[i], "同一天已有预约（账号合并）", true); err != nil && !errors.Is(err, ErrNotChangeable) {
			return err
		}
	}
	var dup []model.Booking
	if err := db.Where("patient_id = ? AND idempotency_key IN (SELECT idempotency_key FROM bookings WHERE patient_id = ?)", self.ID, owner.ID).
		Find(&dup).Error; err != nil {
		return err
	}
	for _, b := range dup {
		if err := db.Model(&model.Booking{}).Where("id = ?", b.ID).Update("idempotency_key", fmt.Sprintf("merged-%d-%d", self.ID, b.ID)).Error; err != nil {
			return err
		}
	}
	return db.Model(&model.Booking{}).Where("person_key = ?", selfKey).Update("person_key", ownerKey).Error
}

// prepareInvites: of two invitations for one occurrence the answered one
// (else owner's) stays.
func prepareInvites(_ context.Context, db *gorm.DB, self, owner *model.Patient) error {
	var clash []model.SurveyInvite
	if err := db.Where("patient_id = ? AND occurrence IN (SELECT occurrence FROM survey_invites WHERE patient_id = ?)", self.ID, owner.ID).
		Find(&clash).Error; err != nil {
		return err
	}
	for _, mine := range clash {
		var theirs model.SurveyInvite
		if err := db.Where("patient_id = ? AND occurrence = ?", owner.ID, mine.Occurrence).Take(&theirs).Error; err != nil {
			return err
		}
		drop := mine.ID
		switch {
		case mine.AnsweredAt != nil && theirs.AnsweredAt != nil:
			// Both answered: both stay, one under a distinct occurrence.
			if err := db.Model(&model.SurveyInvite{}).Where("id = ?", mine.ID).
				Update("occurrence", fmt.Sprintf("%s~%d", model.Truncate(mine.Occurrence, 40), mine.ID)).Error; err != nil {
				return err
			}
			continue
		case mine.AnsweredAt != nil:
			drop = theirs.ID
		}
		if err := db.Delete(&model.SurveyInvite{}, drop).Error; err != nil {
			return err
		}
	}
	return nil
}

// prepareConversations re-keys self's open conversations to owner; where
// owner has one open on the same topic, self's is closed.
func (s *PatientData) prepareConversations(_ context.Context, db *gorm.DB, self, owner *model.Patient) error {
	var open []model.Conversation
	if err := db.Where("patient_id = ? AND open_key IS NOT NULL", self.ID).Find(&open).Error; err != nil {
		return err
	}
	now := s.now()
	for _, cv := range open {
		key := openKey(owner.ID, cv.Topic)
		var n int64
		if err := db.Model(&model.Conversation{}).Where("open_key = ?", *key).Count(&n).Error; err != nil {
			return err
		}
		upd := map[string]any{"open_key": *key}
		if n > 0 {
			upd = map[string]any{"open_key": nil, "status": model.ConversationClosed, "closed_at": now}
		}
		if err := db.Model(&model.Conversation{}).Where("id = ?", cv.ID).Updates(upd).Error; err != nil {
			return err
		}
	}
	return nil
}

// ---- export ----

// Export is everything careloop holds about a patient, for the patient
// (PIPL art. 45): one key per kind of data, as model.PatientRegistry names
// them; see the README for the layout.
type Export map[string]any

type exporter func(ctx context.Context, db *gorm.DB, pt *model.Patient) (any, error)

// Export gathers the caller's data.
func (s *PatientData) Export(ctx context.Context, p Principal) (Export, error) {
	if !p.IsPatient() {
		return nil, model.ErrForbidden
	}
	db := s.db.Conn(ctx)
	var pt model.Patient
	if err := db.Where("id = ?", p.ID).Take(&pt).Error; err != nil {
		return nil, fmt.Errorf("export: load patient %d: %w", p.ID, model.NotFound(err))
	}
	out := Export{"exported_at": model.LocalTime(s.now()), "layout": 1}
	ex := s.exporters()
	for _, e := range model.PatientRegistry() {
		if e.Export == "" {
			continue
		}
		if _, done := out[e.Export]; done {
			continue
		}
		fn, ok := ex[e.Export]
		if !ok {
			return nil, fmt.Errorf("export %s: no exporter", e.Export)
		}
		v, err := fn(ctx, db, &pt)
		if err != nil {
			return nil, fmt.Errorf("export %s of patient %d: %w", e.Export, pt.ID, err)
		}
		out[e.Export] = v
	}
	return out, nil
}

// exportList runs q into a slice of T and maps each row.
func exportList[T any](q *gorm.DB, f func(*T) map[string]any) ([]map[string]any, error) {
	var rs []T
	if err := q.Find(&rs).Error; err != nil {
		return nil, err
	}
	out := make([]map[string]any, 0, len(rs))
	for i := range rs {
		out = append(out, f(&rs[i]))
	}
	return out, nil
}

func localPtr(t *time.Time) any {
	if t == nil {
		return nil
	}
	return model.LocalTime(*t)
}

func (s *PatientData) exporters() map[string]exporter {
	return map[string]exporter{
		"article_reads": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			return exportList(db.Where("patient_id = ?", pt.ID).Order("id"), func(r *model.ArticleRead) map[string]any {
				return map[string]any{"article_id": r.ArticleID, "times": r.Count, "first_at": model.LocalTime(r.FirstAt), "last_at": model.LocalTime(r.LastAt)}
			})
		},
		"rfm": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			return exportList(db.Where("patient_id = ?", pt.ID).Order("run_id"), func(r *model.RFMScore) map[string]any {
				return map[string]any{"run_id": r.RunID, "recency_days": r.R, "frequency": r.F, "monetary_fen": r.M,
					"r": r.RScore, "f": r.FScore, "m": r.MScore, "tier": r.Tier}
			})
		},
		"campaigns": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			return exportList(db.Where("patient_id = ?", pt.ID).Order("campaign_id"), func(r *model.CampaignRecipient) map[string]any {
				m := map[string]any{"campaign_id": r.CampaignID, "variant": r.Variant, "skipped": r.Skip, "at": model.LocalTime(r.CreatedAt)}
				if r.ConvertedAt != nil {
					m["converted_at"] = model.LocalTime(*r.ConvertedAt)
				}
				return m
			})
		},
		"article_shares": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			return exportList(db.Where("patient_id = ?", pt.ID).Order("id"), func(r *model.ArticleShare) map[string]any {
				return map[string]any{"article_id": r.ArticleID, "scene": r.Scene, "at": model.LocalTime(r.CreatedAt)}
			})
		},
		"profile": func(_ context.Context, _ *gorm.DB, pt *model.Patient) (any, error) {
			m := map[string]any{"id": pt.ID, "name": pt.Name, "gender": pt.Gender, "region": pt.Region, "region_code": pt.RegionCode,
				"source": pt.Source, "phone": s.sealer.OpenString(pt.PhoneEnc), "id_card": s.sealer.IDCardOf(pt.IDCardEnc),
				"created_at": model.LocalTime(pt.CreatedAt)}
			if pt.HISID != nil {
				m["his_id"] = *pt.HISID
			}
			if pt.BirthDate != nil {
				m["birth_date"] = model.DateString(*pt.BirthDate)
			}
			return m, nil
		},
		"health_archive": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			var h model.HealthArchive
			err := db.Where("patient_id = ?", pt.ID).Take(&h).Error
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			plain, err := s.sealer.Open(h.DataEnc)
			if err != nil {
				return nil, err
			}
			return map[string]any{"data": json.RawMessage(plain), "updated_at": model.LocalTime(h.UpdatedAt)}, nil
		},
		"family_members": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			return exportList(db.Where("owner_id = ?", pt.ID).Order("id"), func(m *model.FamilyMember) map[string]any {
				r := map[string]any{"id": m.ID, "name": m.Name, "relation": m.Relation, "gender": m.Gender, "phone": s.sealer.OpenString(m.PhoneEnc),
					"id_card": s.sealer.IDCardOf(m.IDCardEnc)}
				if m.BirthDate != nil {
					r["birth_date"] = model.DateString(*m.BirthDate)
				}
				return r
			})
		},
		"consents": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			return exportList(db.Where("patient_id = ?", pt.ID).Order("id"), func(c *model.Consent) map[string]any {
				return map[string]any{"kind": c.Kind, "version": c.Version, "granted": c.Granted, "at": model.LocalTime(c.CreatedAt)}
			})
		},
		"tags": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			names := []string{}
			err := db.Model(&model.Tag{}).Joins("JOIN patient_tags ON patient_tags.tag_id = tags.id").
				Where("patient_tags.patient_id = ?", pt.ID).Order("tags.name").Pluck("tags.name", &names).Error
			return names, err
		},
		"access_log": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			return exportList(db.Where("patient_id = ?", pt.ID).Order("id").Limit(10000), func(a *model.AuditLog) map[string]any {
				return map[string]any{"role": a.Role, "action": a.Action, "at": model.LocalTime(a.CreatedAt)}
			})
		},
		"notifications": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			return exportList(db.Where("patient_id = ?", pt.ID).Order("id"), func(n *model.Notification) map[string]any {
				var params any
				_ = json.Unmarshal([]byte(n.Params), &params)
				return map[string]any{"reason": n.Reason, "status": n.Status, "channel": n.Channel, "params": params,
					"due_at": model.LocalTime(n.DueAt), "sent_at": localPtr(n.SentAt)}
			})
		},
		"subscriptions": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			return exportList(db.Where("patient_id = ?", pt.ID).Order("template_id"), func(c *model.SubscribeCredit) map[string]any {
				return map[string]any{"template_id": c.TemplateID, "credits": c.Credits}
			})
		},
		"official_account": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			return exportList(db.Where("patient_id = ?", pt.ID).Order("subscribed_at"), func(f *model.Follower) map[string]any {
				return map[string]any{"openid": f.OpenID, "subscribed": f.Subscribed, "scene": f.Scene, "subscribed_at": model.LocalTime(f.SubscribedAt)}
			})
		},
		"notification_preferences": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			return exportList(db.Where("patient_id = ?", pt.ID).Order("category"), func(p *model.NotifyPreference) map[string]any {
				return map[string]any{"category": p.Category, "opt_out": p.OptOut}
			})
		},
		"bookings": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			return exportList(db.Where("patient_id = ?", pt.ID).Order("id"), func(b *model.Booking) map[string]any {
				return map[string]any{"id": b.ID, "code": b.Code, "family_member_id": b.FamilyMemberID, "package_id": b.PackageID, "date": b.Date,
					"status": b.Status, "price_fen": b.PriceFen, "checked_in_at": localPtr(b.CheckedInAt), "completed_at": localPtr(b.CompletedAt),
					"cancelled_at": localPtr(b.CancelledAt), "created_at": model.LocalTime(b.CreatedAt)}
			})
		},
		"reports": s.exportReports,
		"points": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			var acc model.PointsAccount
			if err := db.Where("patient_id = ?", pt.ID).Take(&acc).Error; err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
				return nil, err
			}
			ledger, err := exportList(db.Where("patient_id = ?", pt.ID).Order("id"), func(e *model.PointsEntry) map[string]any {
				return map[string]any{"kind": e.Kind, "amount": e.Amount, "reason": e.Reason, "expires_at": localPtr(e.ExpiresAt), "at": model.LocalTime(e.CreatedAt)}
			})
			return map[string]any{"balance": acc.Balance, "growth": acc.Growth, "ledger": ledger}, err
		},
		"coupons": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			return exportList(db.Where("patient_id = ?", pt.ID).Order("id"), func(c *model.Coupon) map[string]any {
				return map[string]any{"code": c.Code, "value_fen": c.ValueFen, "status": c.Status, "booking_id": c.BookingID, "expires_at": model.LocalTime(c.ExpiresAt)}
			})
		},
		"surveys": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			var rs []model.SurveyResponse
			if err := db.Where("patient_id = ?", pt.ID).Find(&rs).Error; err != nil {
				return nil, err
			}
			byInvite := map[uint64]*model.SurveyResponse{}
			for i := range rs {
				byInvite[rs[i].InviteID] = &rs[i]
			}
			return exportList(db.Where("patient_id = ?", pt.ID).Order("id"), func(v *model.SurveyInvite) map[string]any {
				m := map[string]any{"survey_id": v.SurveyID, "occurrence": v.Occurrence, "invited_at": model.LocalTime(v.CreatedAt), "answered_at": localPtr(v.AnsweredAt)}
				if r := byInvite[v.ID]; r != nil {
					m["answers"], m["comment"], m["nps"] = json.RawMessage(orJSONNull(r.Answers)), r.Comment, r.NPS
				}
				return m
			})
		},
		"complaints": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			var steps []model.ComplaintStep
			if err := db.Where("complaint_id IN (SELECT id FROM complaints WHERE patient_id = ?)", pt.ID).Order("id").Find(&steps).Error; err != nil {
				return nil, err
			}
			byComplaint := map[uint64][]map[string]any{}
			for _, st := range steps {
				byComplaint[st.ComplaintID] = append(byComplaint[st.ComplaintID], map[string]any{"from": st.From, "to": st.To, "at": model.LocalTime(st.CreatedAt)})
			}
			return exportList(db.Where("patient_id = ?", pt.ID).Order("id"), func(c *model.Complaint) map[string]any {
				return map[string]any{"category": c.Category, "content": c.Content, "status": c.Status, "reply": c.Reply, "rating": c.Rating,
					"created_at": model.LocalTime(c.CreatedAt), "steps": orEmpty(byComplaint[c.ID])}
			})
		},
		"conversations": func(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
			var msgs []model.ChatMessage
			if err := db.Where("conversation_id IN (SELECT id FROM conversations WHERE patient_id = ?)", pt.ID).Order("id").Find(&msgs).Error; err != nil {
				return nil, err
			}
			byConv := map[uint64][]map[string]any{}
			for _, m := range msgs {
				byConv[m.ConversationID] = append(byConv[m.ConversationID], map[string]any{"sender": m.Sender, "kind": m.Kind, "content": m.Content, "at": model.LocalTime(m.CreatedAt)})
			}
			return exportList(db.Where("patient_id = ?", pt.ID).Order("id"), func(c *model.Conversation) map[string]any {
				return map[string]any{"topic": c.Topic, "status": c.Status, "started_at": model.LocalTime(c.CreatedAt), "messages": orEmpty(byConv[c.ID])}
			})
		},
	}
}

func orEmpty(v []map[string]any) []map[string]any {
	if v == nil {
		return []map[string]any{}
	}
	return v
}

func orJSONNull(s string) string {
	if s == "" {
		return "null"
	}
	return s
}

// exportReports lists the patient's reports with the visible version's
// content.
func (s *PatientData) exportReports(_ context.Context, db *gorm.DB, pt *model.Patient) (any, error) {
	var rs []model.Report
	if err := db.Where("patient_id = ? AND retained_until IS NULL", pt.ID).Order("id").Find(&rs).Error; err != nil {
		return nil, err
	}
	var vs []model.ReportVersion
	if err := db.Where("report_id IN (SELECT id FROM reports WHERE patient_id = ? AND retained_until IS NULL)", pt.ID).Order("id").Find(&vs).Error; err != nil {
		return nil, err
	}
	current := make(map[uint64]int, len(rs)) // report id → its current version
	for _, r := range rs {
		current[r.ID] = r.Version
	}
	content := map[uint64]json.RawMessage{}
	for _, v := range vs {
		if ver, ok := current[v.ReportID]; !ok || ver != v.Version {
			continue
		}
		plain, err := s.sealer.Open(v.DataEnc)
		if err != nil {
			return nil, fmt.Errorf("open report %d: %w", v.ReportID, err)
		}
		content[v.ReportID] = plain
	}
	out := make([]map[string]any, 0, len(rs))
	for _, r := range rs {
		out = append(out, map[string]any{"id": r.ID, "exam_date": r.ExamDate, "family_member_id": r.FamilyMemberID, "version": r.Version,
			"abnormal_count": r.AbnormalCount, "critical": r.Critical, "interpretation": r.Interpretation, "content": content[r.ID]})
	}
	return out, nil
}

// ---- erase ----

type eraseStep func(ctx context.Context, db *gorm.DB, pt *model.Patient, now time.Time) error

func (s *PatientData) eraseSteps() map[string]eraseStep {
	return map[string]eraseStep{
		"patients":         s.erasePatient,
		"bookings":         s.eraseBookings,
		"reports":          retain(&model.Report{}, "patient_id = ?"),
		"report_versions":  nil, // with their report
		"tasks":            eraseTasks,
		"survey_responses": anonymise(&model.SurveyResponse{}, "patient_id = ?", map[string]any{"answers": "", "comment": ""}),
		"complaints": anonymise(&model.Complaint{}, "patient_id = ?", map[string]any{"content": model.SealText("（用户已注销）"), "resolution": "",
			"reply": ""}),
		"complaint_steps": anonymise(&model.ComplaintStep{}, "complaint_id IN (SELECT id FROM complaints WHERE patient_id = ?)",
			map[string]any{"note": ""}),
		"followers": func(_ context.Context, db *gorm.DB, pt *model.Patient, _ time.Time) error {
			return db.Model(&model.Follower{}).Where("patient_id = ?", pt.ID).Updates(map[string]any{"patient_id": nil, "union_id": ""}).Error
		},
	}
}

func retain(m any, where string) eraseStep {
	return func(_ context.Context, db *gorm.DB, pt *model.Patient, now time.Time) error {
		return db.Model(m).Where(where, pt.ID).Where("retained_until IS NULL").Update("retained_until", model.RetainUntil(now)).Error
	}
}

func anonymise(m any, where string, clear map[string]any) eraseStep {
	return func(_ context.Context, db *gorm.DB, pt *model.Patient, _ time.Time) error {
		return db.Model(m).Where(where, pt.ID).Updates(clear).Error
	}
}

// eraseTasks retains clinical tasks sealed and deletes the others.
func eraseTasks(ctx context.Context, db *gorm.DB, pt *model.Patient, now time.Time) error {
	clinical := []string{model.TaskCriticalValue, model.TaskInterpretation}
	if err := db.Model(&model.Task{}).Where("patient_id = ? AND kind IN ? AND retained_until IS NULL", pt.ID, clinical).
		Update("retained_until", model.RetainUntil(now)).Error; err != nil {
		return err
	}
	return db.Where("patient_id = ? AND kind NOT IN ?", pt.ID, clinical).Delete(&model.Task{}).Error
}

// eraseBookings cancels the bookings still to come (their seats return).
func (s *PatientData) eraseBookings(ctx context.Context, db *gorm.DB, pt *model.Patient, _ time.Time) error {
	var open []model.Booking
	if err := db.Where("patient_id = ? AND status = ?", pt.ID, model.BookingBooked).Find(&open).Error; err != nil {
		return err
	}
	for i := range open {
		if err := s.bookings.cancelTx(ctx, &open[i], "", false); err != nil && !errors.Is(err, ErrNotChangeable) {
			return err
		}
	}
	return nil
}

// erasePatient clears the identity and keeps it sealed for the retention
// period of the medical records.
func (s *PatientData) erasePatient(_ context.Context, db *gorm.DB, pt *model.Patient, now time.Time) error {
	ident := map[string]any{"name": pt.Name, "gender": pt.Gender, "phone": s.sealer.OpenString(pt.PhoneEnc),
		"id_card": s.sealer.IDCardOf(pt.IDCardEnc), "region_code": pt.RegionCode}
	if pt.HISID != nil {
		ident["his_id"] = *pt.HISID
	}
	if pt.BirthDate != nil {
		ident["birth_date"] = model.DateString(*pt.BirthDate)
	}
	plain, _ := json.Marshal(ident)
	return db.Model(&model.Patient{}).Where("id = ?", pt.ID).Updates(map[string]any{
		"open_id": nil, "union_id": nil, "his_id": nil, "phone_hash": nil, "phone_enc": nil, "phone_tail": "",
		"id_card_hash": nil, "id_card_enc": nil, "id_card_mask": "", "region_code": "",
		"name": "已注销用户", "gender": "unknown", "birth_date": nil, "region": "", "source": "",
		"erased_at": now, "retained_enc": s.sealer.Seal(plain), "retained_until": model.RetainUntil(now),
	}).Error
}

// Erase carries out the caller's deletion request, table by table as the
// registry says (children before their parents), in one transaction; every
// session ends. It cannot be undone.
func (s *PatientData) Erase(ctx context.Context, p Principal) error {
	if !p.IsPatient() {
		return model.ErrForbidden
	}
	now := s.now()
	var images []string
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		var pt model.Patient
		if err := db.Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", p.ID).Take(&pt).Error; err != nil {
			return fmt.Errorf("erase: load patient %d: %w", p.ID, model.NotFound(err))
		}
		images = images[:0]
		if err := db.Model(&model.ChatMessage{}).Where("conversation_id IN (SELECT id FROM conversations WHERE patient_id = ?) AND image_key IS NOT NULL", pt.ID).
			Pluck("image_key", &images).Error; err != nil {
			return fmt.Errorf("erase: images of patient %d: %w", pt.ID, err)
		}
		var unsent []string
		if err := db.Model(&model.ChatUpload{}).Where("patient_id = ? AND message_id IS NULL", pt.ID).Pluck("key", &unsent).Error; err != nil {
			return fmt.Errorf("erase: uploads of patient %d: %w", pt.ID, err)
		}
		images = append(images, unsent...)
		steps := s.eraseSteps()
		reg := model.PatientRegistry()
		for i := len(reg) - 1; i >= 0; i-- {
			e := reg[i]
			table := s.db.TableOf(e.Model)
			step, has := steps[table]
			var err error
			switch {
			case has && step == nil:
			case has:
				err = step(ctx, db, &pt, now)
			case e.Erase == model.EraseDelete:
				err = registryRows(db, e, pt.ID).Delete(e.Model).Error
			case e.Erase == model.EraseKeep:
			default:
				err = errors.New("no step for its rule")
			}
			if err != nil {
				return fmt.Errorf("erase %s of patient %d: %w", table, pt.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Files go once the rows naming them are gone.
	for _, key := range images {
		if err := s.files.Delete(ctx, imagePrefix+key); err != nil {
			s.log.Warn("erase: chat image not deleted", "key", key, "err", err)
		}
	}
	return nil
}
