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
	"careloop/wxconfig"
)

// TagWeChat is what mirroring tags needs of WeChat (wxconfig.Clients).
type TagWeChat interface {
	CreateUserTag(ctx context.Context, name string) (int, error)
	DeleteUserTag(ctx context.Context, id int) error
	TagUsers(ctx context.Context, id int, openIDs []string, untag bool) error
}

// WxTags mirror careloop tags as WeChat user tags: the followers among the
// patients with a tag are tagged at WeChat, those who lost it untagged.
// Sync is incremental (WxTagMember is what WeChat has), survives restarts
// (that state is in the database), runs on one instance at a time, and
// shows its state per tag.
type WxTags struct {
	db     *model.DB
	wx     TagWeChat
	locker coord.Locker
	log    *slog.Logger
	now    func() time.Time
	// Every is how often Run syncs without being woken.
	Every time.Duration
	wake  doorbell
}

// NewWxTags returns the tag mirror.
func NewWxTags(db *model.DB, wx TagWeChat, locker coord.Locker, log *slog.Logger, now func() time.Time) *WxTags {
	if now == nil {
		now = time.Now
	}
	return &WxTags{db: db, wx: wx, locker: locker, log: log, now: now, Every: time.Minute, wake: newDoorbell()}
}

// WeChat's limits on user tags.
const (
	wxTagBatch    = 50 // openids per batchtagging call
	wxTagNameMax  = 30
	wxTagsPerUser = 20
)

// MirroredTag is a mirrored tag with its careloop name.
type MirroredTag struct {
	model.WxTag
	TagName string
}

// Mirror starts (on) or stops mirroring a careloop tag at WeChat. Stopping
// deletes the WeChat tag, which takes it off every follower.
func (s *WxTags) Mirror(ctx context.Context, by Principal, tagID uint64, on bool) (*MirroredTag, error) {
	if err := by.must(ActOAManage); err != nil {
		return nil, err
	}
	var tag model.Tag
	if err := s.db.Conn(ctx).Where("id = ?", tagID).Take(&tag).Error; err != nil {
		return nil, model.NotFound(err)
	}
	var have model.WxTag
	err := s.db.Conn(ctx).Where("tag_id = ?", tagID).Take(&have).Error
	exists := err == nil
	if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, fmt.Errorf("mirror of tag %d: %w", tagID, err)
	}
	if !on {
		if exists {
			if err := s.wx.DeleteUserTag(ctx, have.WxTagID); err != nil && wxconfig.CodeOf(err) != 45159 {
				return nil, wechatRefusal(err)
			}
			if err := s.db.InTx(ctx, func(ctx context.Context) error {
				if err := s.db.Conn(ctx).Where("tag_id = ?", tagID).Delete(&model.WxTagMember{}).Error; err != nil {
					return err
				}
				return s.db.Conn(ctx).Where("tag_id = ?", tagID).Delete(&model.WxTag{}).Error
			}); err != nil {
				return nil, fmt.Errorf("stop mirroring tag %d: %w", tagID, err)
			}
		}
		return &MirroredTag{WxTag: model.WxTag{TagID: tagID}, TagName: tag.Name}, nil
	}
	if !exists {
		name := []rune(tag.Name)
		if len(name) > wxTagNameMax {
			name = name[:wxTagNameMax]
		}
		id, err := s.wx.CreateUserTag(ctx, string(name))
		if err != nil {
			return nil, wechatRefusal(err)
		}
		have = model.WxTag{TagID: tagID, WxTagID: id, Name: string(name)}
		if err := s.db.Conn(ctx).Create(&have).Error; err != nil && !model.IsDuplicate(err) {
			return nil, fmt.Errorf("mirror tag %d: %w", tagID, err)
		}
	}
	s.Wake()
	return &MirroredTag{WxTag: have, TagName: tag.Name}, nil
}

// List returns the mirrored tags and where their sync is.
func (s *WxTags) List(ctx context.Context, by Principal) ([]MirroredTag, error) {
	if err := by.must(ActOAManage); err != nil {
		return nil, err
	}
	var out []MirroredTag
	if err := s.db.Conn(ctx).Table("wx_tags").Select("wx_tags.*, tags.name AS tag_name").
		Joins("JOIN tags ON tags.id = wx_tags.tag_id").Order("wx_tags.tag_id").Scan(&out).Error; err != nil {
		return nil, fmt.Errorf("mirrored tags: %w", err)
	}
	return out, nil
}

// SyncNow asks for a sync round at once.
func (s *WxTags) SyncNow(ctx context.Context, by Principal) error {
	if err := by.must(ActOAManage); err != nil {
		return err
	}
	s.Wake()
	return nil
}

// Wake makes Run sync now.
func (s *WxTags) Wake() { s.wake.ring() }

// Run syncs at start, every Every, and when woken, until ctx ends.
func (s *WxTags) Run(ctx context.Context) error {
	return s.wake.serve(ctx, s.Every, s.log, "wechat tags: sync", func(ctx context.Context) (bool, error) { return false, s.Sync(ctx) })
}

// Sync does one round for every mirrored tag, on one instance at a time
// (another holding the lock: nothing to do).
func (s *WxTags) Sync(ctx context.Context) error {
	return alone(ctx, s.locker, "wx:tag-sync", 5*time.Minute, func() error { return s.sync(ctx) })
}

func (s *WxTags) sync(ctx context.Context) error {
	var tags []model.WxTag
	if err := s.db.Conn(ctx).Order("tag_id").Find(&tags).Error; err != nil {
		return fmt.Errorf("mirrored tags: %w", err)
	}
	for _, t := range tags {
		if err := s.syncTag(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// syncTag tags at WeChat the followers who should have t and do not, and
// untags those who have it and should not.
func (s *WxTags) syncTag(ctx context.Context, t model.WxTag) error {
	db := s.db.Conn(ctx)
	var want []string
	if err := db.Model(&model.Follower{}).Where("subscribed = ? AND patient_id IN (SELECT patient_id FROM patient_tags WHERE tag_id = ?)", true, t.TagID).
		Order("open_id").Pluck("open_id", &want).Error; err != nil {
		return fmt.Errorf("followers with tag %d: %w", t.TagID, err)
	}
	var have []string
	if err := db.Model(&model.WxTagMember{}).Where("tag_id = ?", t.TagID).Order("open_id").Pluck("open_id", &have).Error; err != nil {
		return fmt.Errorf("members of tag %d at WeChat: %w", t.TagID, err)
	}
	wantSet := make(map[string]bool, len(want))
	for _, o := range want {
		wantSet[o] = true
	}
	haveSet := make(map[string]bool, len(have))
	var remove []string
	for _, o := range have {
		haveSet[o] = true
		if !wantSet[o] {
			remove = append(remove, o)
		}
	}
	var add []string
	for _, o := range want {
		if !haveSet[o] {
			add = append(add, o)
		}
	}
	var lastErr error
	overLimit := 0
	for start := 0; start < len(remove) && lastErr == nil; start += wxTagBatch {
		part := remove[start:min(start+wxTagBatch, len(remove))]
		if lastErr = s.wx.TagUsers(ctx, t.WxTagID, part, true); lastErr == nil {
			lastErr = db.Where("tag_id = ? AND open_id IN ?", t.TagID, part).Delete(&model.WxTagMember{}).Error
		}
	}
	for start := 0; start < len(add) && lastErr == nil; start += wxTagBatch {
		part := add[start:min(start+wxTagBatch, len(add))]
		err := s.wx.TagUsers(ctx, t.WxTagID, part, false)
		if wxconfig.CodeOf(err) == wxconfig.CodeTooManyTags {
			// Someone in the batch holds 20 tags: one by one, to tag the rest.
			var ok []string
			for _, o := range part {
				switch e := s.wx.TagUsers(ctx, t.WxTagID, []string{o}, false); {
				case e == nil:
					ok = append(ok, o)
				case wxconfig.CodeOf(e) == wxconfig.CodeTooManyTags:
					overLimit++
				default:
					err = e
				}
			}
			part = ok
			if err != nil && wxconfig.CodeOf(err) == wxconfig.CodeTooManyTags {
				err = nil
			}
		}
		if len(part) > 0 {
			rows := make([]model.WxTagMember, len(part))
			for i, o := range part {
				rows[i] = model.WxTagMember{TagID: t.TagID, OpenID: o}
			}
			if cerr := db.Create(&rows).Error; cerr != nil && !model.IsDuplicate(cerr) {
				return fmt.Errorf("record members of tag %d: %w", t.TagID, cerr)
			}
		}
		lastErr = err
	}
	var after []string
	if err := db.Model(&model.WxTagMember{}).Where("tag_id = ?", t.TagID).Pluck("open_id", &after).Error; err != nil {
		return fmt.Errorf("members of tag %d at WeChat: %w", t.TagID, err)
	}
	pending := -overLimit
	afterSet := make(map[string]bool, len(after))
	for _, o := range after {
		afterSet[o] = true
		if !wantSet[o] {
			pending++
		}
	}
	for _, o := range want {
		if !afterSet[o] {
			pending++
		}
	}
	upd := map[string]any{"members": len(after), "over_limit": overLimit, "pending": max(0, pending), "synced_at": s.now().UTC(), "last_error": ""}
	if lastErr != nil {
		msg := lastErr.Error()
		var werr *wxconfig.Error
		if errors.As(lastErr, &werr) {
			msg = werr.Chinese()
		}
		upd["last_error"] = model.Truncate(msg, 500)
		s.log.Warn("wechat tags: sync tag", "tag", t.TagID, "err", lastErr)
	}
	return db.Model(&model.WxTag{}).Where("tag_id = ?", t.TagID).Updates(upd).Error
}
