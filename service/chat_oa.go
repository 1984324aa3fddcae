package service

import (
	"context"
	"errors"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/model"
)

// FromOA adds a message a follower sent to the official account to their
// open conversation (opening one when needed) and returns the passive reply
// to answer WeChat with ("" for none). msgID makes WeChat's retries no-ops.
func (s *Chat) FromOA(ctx context.Context, openID, msgID, kind, content string) (string, error) {
	m := PatientMessage{Kind: kind, Content: content, channel: "oa"}
	if err := m.check(); err != nil {
		return "", nil // an empty or oversized message: nothing to route
	}
	// Linking an unknown follower asks WeChat for the unionid: ctx bounds
	// it (the callback leaves a slow one to the worker, which calls again).
	id, err := s.followerPatient(ctx, openID)
	if err != nil {
		return "", err
	}
	return s.intake(ctx, id, msgID, m)
}

// intake files a follower's message in their open conversation and returns
// the automatic reply, if any.
func (s *Chat) intake(ctx context.Context, patientID uint64, msgID string, m PatientMessage) (string, error) {
	cv, _, err := s.open(ctx, patientID, StartRequest{Topic: DefaultTopic}, "oa")
	if err != nil {
		return "", err
	}
	key := "oa:" + msgID
	_, auto, err := s.append(ctx, cv, m, &key, "oa")
	if err != nil || auto == nil {
		return "", err
	}
	return auto.Content, nil
}

// followerPatient finds the patient behind an official-account follower:
// linked through the unionid, or a new patient known only by this follower.
func (s *Chat) followerPatient(ctx context.Context, openID string) (uint64, error) {
	var f model.Follower
	err := s.db.Conn(ctx).Where("open_id = ?", openID).Take(&f).Error
	if err == nil && f.PatientID != nil {
		return *f.PatientID, nil
	}
	if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return 0, err
	}
	if s.followers != nil {
		if err := s.followers.Link(ctx, openID); err != nil {
			s.log.Warn("chat: link follower", "err", err)
		}
		if err := s.db.Conn(ctx).Where("open_id = ?", openID).Take(&f).Error; err == nil && f.PatientID != nil {
			return *f.PatientID, nil
		}
	}
	// WeChat gave no unionid: the follower becomes a patient of their own,
	// merged later if they log in to the mini-program with the same unionid.
	var id uint64
	err = s.db.InTx(ctx, func(ctx context.Context) error {
		var f model.Follower
		if err := s.db.Conn(ctx).Clauses(clause.Locking{Strength: "UPDATE"}).Where("open_id = ?", openID).Take(&f).Error; err == nil && f.PatientID != nil {
			id = *f.PatientID
			return nil
		}
		p := model.Patient{Gender: "unknown", Source: "oa"}
		if err := s.db.Conn(ctx).Create(&p).Error; err != nil {
			return err
		}
		id = p.ID
		return s.db.Conn(ctx).Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "open_id"}}, DoUpdates: clause.AssignmentColumns([]string{"patient_id"})}).
			Create(&model.Follower{OpenID: openID, PatientID: &p.ID, SubscribedAt: s.now().UTC()}).Error
	})
	return id, err
}
