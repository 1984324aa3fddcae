package service

import (
	"context"
	"errors"
	"fmt"

	"gorm.io/gorm"

	"careloop/model"
)

// OAUserInfo is what linking a follower needs from WeChat.
type OAUserInfo interface {
	// FollowerUnionID returns the unionid of an official-account follower.
	FollowerUnionID(ctx context.Context, openID string) (string, error)
}

// Followers link official-account followers to patients: the official
// account does it for a new follower, the chat for a follower who writes
// before they were linked.
type Followers struct {
	db *model.DB
	wx OAUserInfo
}

// NewFollowers returns the follower linking.
func NewFollowers(db *model.DB, wx OAUserInfo) *Followers { return &Followers{db: db, wx: wx} }

// Link asks WeChat for a follower's unionid and links the follower
// to the patient with that unionid (creating the patient, marked with the
// QR scene as first touch, when the person is new). It runs after the
// callback has answered: WeChat wants an answer within 5 seconds.
func (s *Followers) Link(ctx context.Context, openID string) error {
	union, err := s.wx.FollowerUnionID(ctx, openID)
	if err != nil || union == "" {
		return err
	}
	var f model.Follower
	if err := s.db.Conn(ctx).Where("open_id = ?", openID).Take(&f).Error; err != nil {
		return err
	}
	var p model.Patient
	err = s.db.Conn(ctx).Where("union_id = ?", union).Take(&p).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		p = model.Patient{UnionID: &union, Gender: "unknown", Source: f.Scene}
		if err := s.db.Conn(ctx).Create(&p).Error; err != nil {
			if !model.IsDuplicate(err) {
				return err
			}
			if err := s.db.Conn(ctx).Where("union_id = ?", union).Take(&p).Error; err != nil {
				return err
			}
		}
	} else if err != nil {
		return err
	} else if p.Source == "" && f.Scene != "" {
		if err := s.db.Conn(ctx).Model(&model.Patient{}).Where("id = ? AND source = ?", p.ID, "").Update("source", f.Scene).Error; err != nil {
			return fmt.Errorf("first touch of patient %d: %w", p.ID, err)
		}
	}
	return s.db.Conn(ctx).Model(&model.Follower{}).Where("open_id = ?", openID).Updates(map[string]any{"patient_id": p.ID, "union_id": union}).Error
}
