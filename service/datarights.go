package service

import (
	"context"
	"fmt"

	"careloop/model"
)

// Export is everything careloop holds about a patient, for the patient.
type Export struct {
	ExportedAt string           `json:"exported_at"`
	Profile    map[string]any   `json:"profile"`
	Health     HealthData       `json:"health_archive"`
	Consents   []map[string]any `json:"consents"`
	Family     []map[string]any `json:"family_members"`
	Tags       []string         `json:"tags"`
	// Conversations are the patient's doctor chats with their messages.
	Conversations []map[string]any `json:"conversations"`
}

// Export gathers the caller's data (PIPL: the right to a copy).
func (s *Profile) Export(ctx context.Context, p Principal) (*Export, error) {
	pt, err := s.Me(ctx, p)
	if err != nil {
		return nil, err
	}
	out := &Export{ExportedAt: model.LocalTime(s.now())}
	out.Profile = map[string]any{
		"id": pt.ID, "name": pt.Name, "gender": pt.Gender, "region": pt.Region, "source": pt.Source,
		"phone": s.Phone(pt), "created_at": model.LocalTime(pt.CreatedAt),
	}
	if pt.BirthDate != nil {
		out.Profile["birth_date"] = model.DateString(*pt.BirthDate)
	}
	if out.Health, _, err = s.LoadHealth(ctx, pt.ID); err != nil {
		return nil, err
	}
	var consents []model.Consent
	s.db.Conn(ctx).Where("patient_id = ?", pt.ID).Order("id").Find(&consents)
	out.Consents = []map[string]any{}
	for _, c := range consents {
		out.Consents = append(out.Consents, map[string]any{"kind": c.Kind, "version": c.Version, "granted": c.Granted, "at": model.LocalTime(c.CreatedAt)})
	}
	var fam []model.FamilyMember
	s.db.Conn(ctx).Where("owner_id = ?", pt.ID).Order("id").Find(&fam)
	out.Family = []map[string]any{}
	for _, m := range fam {
		out.Family = append(out.Family, map[string]any{"name": m.Name, "relation": m.Relation, "gender": m.Gender, "phone": s.sealer.OpenString(m.PhoneEnc)})
	}
	out.Tags = []string{}
	s.db.Conn(ctx).Model(&model.Tag{}).Joins("JOIN patient_tags ON patient_tags.tag_id = tags.id").
		Where("patient_tags.patient_id = ?", pt.ID).Order("tags.name").Pluck("tags.name", &out.Tags)
	var convs []model.Conversation
	s.db.Conn(ctx).Where("patient_id = ?", pt.ID).Order("id").Find(&convs)
	var msgs []model.ChatMessage
	s.db.Conn(ctx).Where("conversation_id IN (SELECT id FROM conversations WHERE patient_id = ?)", pt.ID).Order("id").Find(&msgs)
	byConv := map[uint64][]map[string]any{}
	for _, m := range msgs {
		byConv[m.ConversationID] = append(byConv[m.ConversationID], map[string]any{"sender": m.Sender, "kind": m.Kind, "content": m.Content, "at": model.LocalTime(m.CreatedAt)})
	}
	out.Conversations = []map[string]any{}
	for _, c := range convs {
		items := byConv[c.ID]
		if items == nil {
			items = []map[string]any{}
		}
		out.Conversations = append(out.Conversations, map[string]any{"topic": c.Topic, "status": c.Status, "started_at": model.LocalTime(c.CreatedAt), "messages": items})
	}
	return out, nil
}

// Erase carries out a deletion request: personal data is erased, the row is
// kept anonymised so that ledgers (points, bookings) keep their reference,
// every session ends. It cannot be undone.
func (s *Profile) Erase(ctx context.Context, p Principal) error {
	if !p.IsPatient() {
		return model.ErrForbidden
	}
	now := s.now()
	return s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		if err := db.Model(&model.Patient{}).Where("id = ?", p.ID).Updates(map[string]any{
			"open_id": nil, "union_id": nil, "his_id": nil, "phone_hash": nil, "phone_enc": nil,
			"name": "已注销用户", "gender": "unknown", "birth_date": nil, "region": "", "source": "",
			"erased_at": now,
		}).Error; err != nil {
			return fmt.Errorf("anonymise patient: %w", err)
		}
		for _, del := range []struct {
			m     any
			where string
		}{
			{&model.HealthArchive{}, "patient_id = ?"},
			{&model.FamilyMember{}, "owner_id = ?"},
			{&model.PatientTag{}, "patient_id = ?"},
			{&model.ChatMessage{}, "conversation_id IN (SELECT id FROM conversations WHERE patient_id = ?)"},
			{&model.Conversation{}, "patient_id = ?"},
		} {
			if err := db.Where(del.where, p.ID).Delete(del.m).Error; err != nil {
				return err
			}
		}
		// The official-account follower is no longer this person's.
		if err := db.Model(&model.Follower{}).Where("patient_id = ?", p.ID).Updates(map[string]any{"patient_id": nil, "union_id": ""}).Error; err != nil {
			return err
		}
		// Consents are kept: they prove what the patient had agreed to.
		return revokeSessions(ctx, s.db, model.SubjectPatient, p.ID, now)
	})
}
