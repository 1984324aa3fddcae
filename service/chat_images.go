package service

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"careloop/model"
)

// ErrBadImage refuses an upload that is not a JPEG or PNG of at most 5 MB.
var ErrBadImage = model.NewError(model.KindInvalid, "invalid_image", "图片须为 JPG 或 PNG 格式，且不超过 5MB")

// MaxChatImage is the largest image a patient may send.
const MaxChatImage = 5 << 20

// imagePrefix marks a message content that is an image we store.
const imagePrefix = "chat/images/"

// Limits of chat images: uploads per patient a minute and a day; an
// upload not sent within UploadTTL expires.
const (
	UploadsPerMinute = 10
	UploadsPerDay    = 100
	UploadTTL        = 24 * time.Hour
)

// ErrUploadQuota: too many images uploaded.
var ErrUploadQuota = model.NewError(model.KindTooMany, "upload_quota", "上传图片过于频繁，请稍后再试")

// SaveImage stores an image a patient is about to send and returns the
// content to send it with (kind "image"): usable once, by them only.
func (s *Chat) SaveImage(ctx context.Context, p Principal, data []byte) (string, error) {
	if !p.IsPatient() {
		return "", model.ErrForbidden
	}
	if len(data) == 0 || len(data) > MaxChatImage {
		return "", ErrBadImage
	}
	for _, l := range []struct {
		key    string
		n      int
		window time.Duration
	}{{fmt.Sprintf("chat-upload-min:%d", p.ID), UploadsPerMinute, time.Minute}, {fmt.Sprintf("chat-upload-day:%d", p.ID), UploadsPerDay, 24 * time.Hour}} {
		if ok, _, err := s.limiter.Allow(ctx, l.key, l.n, l.window); err == nil && !ok {
			return "", ErrUploadQuota
		}
	}
	ext := ""
	switch http.DetectContentType(data) {
	case "image/jpeg":
		ext = ".jpg"
	case "image/png":
		ext = ".png"
	default:
		return "", ErrBadImage
	}
	file := newImageName() + ext
	if err := s.files.Put(ctx, imagePrefix+file, data); err != nil {
		return "", fmt.Errorf("store chat image: %w", err)
	}
	if err := s.db.Conn(ctx).Create(&model.ChatUpload{Key: file, PatientID: p.ID, CreatedAt: s.now().UTC()}).Error; err != nil {
		return "", fmt.Errorf("record chat image: %w", err)
	}
	return imagePrefix + file, nil
}

// ExpireUploads deletes the images uploaded more than UploadTTL ago and
// never sent (a care-rule tick).
func (s *Chat) ExpireUploads(ctx context.Context, now time.Time) error {
	var stale []string
	if err := s.db.Conn(ctx).Model(&model.ChatUpload{}).Where("message_id IS NULL AND created_at < ?", now.Add(-UploadTTL).UTC()).
		Limit(500).Pluck("key", &stale).Error; err != nil {
		return fmt.Errorf("stale chat uploads: %w", err)
	}
	for _, key := range stale {
		res := s.db.Conn(ctx).Where("`key` = ? AND message_id IS NULL", key).Delete(&model.ChatUpload{})
		if res.Error != nil {
			return fmt.Errorf("expire chat upload: %w", res.Error)
		}
		if res.RowsAffected == 1 {
			if err := s.files.Delete(ctx, imagePrefix+key); err != nil {
				s.log.Warn("chat: expired upload's file", "key", key, "err", err)
			}
		}
	}
	return nil
}

func newImageName() string { return randomHex(16) }

// Image opens a stored chat image: a patient only from their own
// conversations; staff reads are audited.
func (s *Chat) Image(ctx context.Context, by Principal, name string) (io.ReadCloser, error) {
	if !imageName.MatchString(name) {
		return nil, model.ErrNotFound
	}
	key := imagePrefix + name
	// The image is the one message's it was sent with (the upload claim
	// lets an upload be sent once, by its uploader), so only that
	// conversation's people see it; images sent before uploads were
	// claimed are found the same way.
	var m model.ChatMessage
	var cv model.Conversation
	if err := s.db.Conn(ctx).Where("image_key = ?", name).First(&m).Error; err != nil {
		return nil, model.NotFound(err)
	}
	if err := s.db.Conn(ctx).Where("id = ?", m.ConversationID).Take(&cv).Error; err != nil {
		return nil, model.NotFound(err)
	}
	if by.IsPatient() && cv.PatientID != by.ID {
		return nil, model.ErrNotFound
	}
	if !by.IsPatient() {
		if err := by.must(ActChatAnswer); err != nil {
			return nil, err
		}
		if err := s.audit.Record(ctx, by, "chat.image", &cv.PatientID, fmt.Sprintf("conversation %d message %d", cv.ID, m.ID)); err != nil {
			return nil, err
		}
	}
	return s.files.Open(ctx, key)
}

// validImageRef accepts, from the mini-program, only an image uploaded to
// careloop (SaveImage: no outside address reaches a doctor's browser), and
// from the official account only WeChat's own picture link.
func validImageRef(c, channel string) bool {
	if channel == "oa" {
		return strings.HasPrefix(c, "http://mmbiz.qpic.cn/") || strings.HasPrefix(c, "https://mmbiz.qpic.cn/")
	}
	name, ok := strings.CutPrefix(c, imagePrefix)
	return ok && imageName.MatchString(name)
}

var imageName = regexp.MustCompile(`^[0-9a-f]{32}\.(jpg|png)$`)
