package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/model"
	"careloop/wxconfig"
)

// Publishing an article to the official account: Publish queues a
// publication; PublishWorker (on any instance) uploads the images WeChat
// does not have yet, adds the draft and submits it; WeChat's
// PUBLISHJOBFINISH event (PublishFinished) or, when it does not come,
// polling freepublish/get ends it.

// publishMaxAttempts bounds the tries of a publication WeChat keeps
// answering "busy" or "later".
const publishMaxAttempts = 5

// Publish queues the article's publishing and answers at once.
func (s *Articles) Publish(ctx context.Context, by Principal, id uint64) (*model.Article, error) {
	if err := by.must(ActArticles); err != nil {
		return nil, err
	}
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		a, err := s.getForUpdate(ctx, id)
		if err != nil {
			return err
		}
		if a.Status == model.ArticleSubmitted || a.Status == model.ArticlePublishing {
			return ErrArticleBusy
		}
		if a.CoverFileID == 0 {
			return ErrArticleNoCover
		}
		db := s.db.Conn(ctx)
		if err := db.Create(&model.ArticlePublication{ArticleID: id, Version: a.Version, Status: model.PublicationQueued, StaffID: by.ID}).Error; err != nil {
			return fmt.Errorf("queue publication of article %d: %w", id, err)
		}
		if err := db.Model(&model.Article{}).Where("id = ?", id).Updates(map[string]any{"status": model.ArticleSubmitted, "fail_reason": ""}).Error; err != nil {
			return fmt.Errorf("mark article %d submitted: %w", id, err)
		}
		return s.audit.Record(ctx, by, "article.publish", nil, "article "+strconv.FormatUint(id, 10)+" v"+strconv.Itoa(a.Version))
	})
	if err != nil {
		return nil, err
	}
	s.Wake()
	return s.get(ctx, id)
}

func (s *Articles) getForUpdate(ctx context.Context, id uint64) (*model.Article, error) {
	var a model.Article
	if err := s.db.Conn(ctx).Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", id).Take(&a).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, model.ErrNotFound
		}
		return nil, fmt.Errorf("article %d: %w", id, err)
	}
	return &a, nil
}

// Wake makes the publish worker look for work now.
func (s *Articles) Wake() { s.wake.ring() }

// RunPublisher submits queued publications and polls the ones whose
// event is late, until ctx ends.
func (s *Articles) RunPublisher(ctx context.Context) error {
	return s.wake.serve(ctx, time.Second, s.log, "articles: publish", func(ctx context.Context) (bool, error) {
		if did, err := s.PublishNext(ctx); did || err != nil {
			return did, err
		}
		_, err := s.PollPublishing(ctx)
		return false, err
	})
}

// PublishNext claims one queued publication (or one whose worker died)
// and submits it to WeChat. It reports whether it found one.
func (s *Articles) PublishNext(ctx context.Context) (bool, error) {
	now := s.now().UTC()
	var p model.ArticlePublication
	err := s.db.Conn(ctx).Where("status = ? OR (status = ? AND lease_until < ?)", model.PublicationQueued, model.PublicationSubmitting, now).
		Order("id").Take(&p).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("next publication: %w", err)
	}
	token := randomHex(8)
	lease := now.Add(s.Lease)
	res := s.db.Conn(ctx).Model(&model.ArticlePublication{}).Where("id = ? AND status = ? AND attempts = ?", p.ID, p.Status, p.Attempts).
		Updates(map[string]any{"status": model.PublicationSubmitting, "claim_token": token, "lease_until": lease, "attempts": p.Attempts + 1})
	if res.Error != nil {
		return false, fmt.Errorf("claim publication %d: %w", p.ID, res.Error)
	}
	if res.RowsAffected == 0 {
		return true, nil // another worker took it
	}
	p.ClaimToken, p.Attempts = token, p.Attempts+1
	if p.SubmittedAt != nil && p.PublishID == "" {
		// A worker died between asking WeChat to publish and writing
		// down the answer: publishing again could publish twice.
		return true, s.failPublication(ctx, &p, "提交发布后未收到微信的答复，发布结果未知：请在公众号后台核对，确认未发布后再重新发布")
	}
	err = s.submit(ctx, &p)
	if err == nil {
		return true, nil
	}
	var werr *wxconfig.Error
	if !errors.As(err, &werr) {
		// Ours (the database, a file): try again later.
		s.release(ctx, &p)
		return true, err
	}
	switch werr.Outcome() {
	case wxconfig.OutcomeRetry, wxconfig.OutcomeRefreshToken, wxconfig.OutcomeMinuteLimit:
		if p.Attempts < publishMaxAttempts {
			s.release(ctx, &p)
			return true, nil
		}
	case wxconfig.OutcomeUnknown:
		if p.SubmittedAt != nil {
			return true, s.failPublication(ctx, &p, "提交发布时微信未及时答复，发布结果未知：请在公众号后台核对，确认未发布后再重新发布")
		}
		if p.Attempts < publishMaxAttempts {
			s.release(ctx, &p) // uploads and drafts are harmless to repeat
			return true, nil
		}
	}
	return true, s.failPublication(ctx, &p, werr.Chinese())
}

// release gives a publication back to the queue.
func (s *Articles) release(ctx context.Context, p *model.ArticlePublication) {
	if err := s.db.Conn(context.WithoutCancel(ctx)).Model(&model.ArticlePublication{}).Where("id = ? AND claim_token = ?", p.ID, p.ClaimToken).
		Updates(map[string]any{"status": model.PublicationQueued, "lease_until": nil}).Error; err != nil {
		s.log.Error("articles: release publication", "publication", p.ID, "err", err)
	}
}

// submit uploads what WeChat lacks, adds the draft (once) and submits it.
func (s *Articles) submit(ctx context.Context, p *model.ArticlePublication) error {
	a, err := s.get(ctx, p.ArticleID)
	if err != nil {
		return err
	}
	if p.MediaID == "" {
		content, err := s.wechatContent(ctx, a.Content)
		if err != nil {
			return err
		}
		thumb, err := s.wxThumb(ctx, a.CoverFileID)
		if err != nil {
			return err
		}
		mediaID, err := s.wx.AddDraft(ctx, []wxconfig.DraftArticle{{Title: a.Title, Author: a.Author, Digest: a.Digest,
			Content: content, ThumbMediaID: thumb}})
		if err != nil {
			return err
		}
		p.MediaID = mediaID
		if err := s.claimed(ctx, p, map[string]any{"media_id": mediaID}); err != nil {
			return err
		}
	}
	now := s.now().UTC()
	p.SubmittedAt = &now
	if err := s.claimed(ctx, p, map[string]any{"submitted_at": now}); err != nil {
		return err
	}
	publishID, msgDataID, err := s.wx.SubmitPublish(ctx, p.MediaID)
	if err != nil {
		if wxconfig.OutcomeOf(err) != wxconfig.OutcomeUnknown {
			// WeChat answered: nothing was published.
			p.SubmittedAt = nil
			if uerr := s.claimed(ctx, p, map[string]any{"submitted_at": nil}); uerr != nil {
				return uerr
			}
		}
		return err
	}
	polled := s.now().UTC()
	return s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.claimed(ctx, p, map[string]any{"status": model.PublicationPublishing, "publish_id": publishID,
			"msg_data_id": msgDataID, "polled_at": polled, "lease_until": nil}); err != nil {
			return err
		}
		return s.db.Conn(ctx).Model(&model.Article{}).Where("id = ?", p.ArticleID).Update("status", model.ArticlePublishing).Error
	})
}

// errLostClaim: another worker took the publication over.
var errLostClaim = errors.New("publication claim lost")

// claimed updates p while this worker still holds it.
func (s *Articles) claimed(ctx context.Context, p *model.ArticlePublication, upd map[string]any) error {
	res := s.db.Conn(ctx).Model(&model.ArticlePublication{}).Where("id = ? AND claim_token = ?", p.ID, p.ClaimToken).Updates(upd)
	if res.Error != nil {
		return fmt.Errorf("update publication %d: %w", p.ID, res.Error)
	}
	if res.RowsAffected == 0 {
		return errLostClaim
	}
	return nil
}

func (s *Articles) failPublication(ctx context.Context, p *model.ArticlePublication, why string) error {
	now := s.now().UTC()
	return s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Model(&model.ArticlePublication{}).Where("id = ?", p.ID).
			Updates(map[string]any{"status": model.PublicationFailed, "fail_reason": model.Truncate(why, 500), "finished_at": now, "lease_until": nil}).Error; err != nil {
			return fmt.Errorf("fail publication %d: %w", p.ID, err)
		}
		return s.db.Conn(ctx).Model(&model.Article{}).Where("id = ?", p.ArticleID).
			Updates(map[string]any{"status": model.ArticleFailed, "fail_reason": model.Truncate(why, 500)}).Error
	})
}

// wechatContent replaces our images in html by WeChat's copies,
// uploading those WeChat does not have yet.
func (s *Articles) wechatContent(ctx context.Context, html string) (string, error) {
	var err error
	out := mediaSrcRe.ReplaceAllStringFunc(html, func(m string) string {
		if err != nil {
			return m
		}
		key := strings.TrimSuffix(strings.TrimPrefix(m, `src="/media/`), `"`)
		var f *model.MediaFile
		if f, err = s.mediaByKey(ctx, key); err != nil {
			return m
		}
		var url string
		url, err = s.wxImage(ctx, f, model.WxImageInline)
		return `src="` + url + `"`
	})
	return out, err
}

func (s *Articles) wxThumb(ctx context.Context, fileID uint64) (string, error) {
	var f model.MediaFile
	if err := s.db.Conn(ctx).Where("id = ?", fileID).Take(&f).Error; err != nil {
		return "", fmt.Errorf("cover %d: %w", fileID, err)
	}
	return s.wxImage(ctx, &f, model.WxImageThumb)
}

// wxImage returns WeChat's copy of f (an in-article image's URL, or the
// thumb's media_id), uploading it the first time.
func (s *Articles) wxImage(ctx context.Context, f *model.MediaFile, kind string) (string, error) {
	var have model.WxImage
	err := s.db.Conn(ctx).Where("file_id = ? AND kind = ?", f.ID, kind).Take(&have).Error
	if err == nil {
		if kind == model.WxImageThumb {
			return have.MediaID, nil
		}
		return have.URL, nil
	}
	if !errors.Is(err, gorm.ErrRecordNotFound) {
		return "", fmt.Errorf("wechat copy of media %d: %w", f.ID, err)
	}
	rc, err := s.files.Open(ctx, "media/"+f.Key)
	if err != nil {
		return "", fmt.Errorf("open media %d: %w", f.ID, err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return "", fmt.Errorf("read media %d: %w", f.ID, err)
	}
	row := model.WxImage{FileID: f.ID, Kind: kind, CreatedAt: s.now().UTC()}
	if kind == model.WxImageThumb {
		thumb, err := thumbForWeChat(data)
		if err != nil {
			return "", err
		}
		if row.MediaID, err = s.wx.AddThumb(ctx, "cover.jpg", thumb); err != nil {
			return "", err
		}
	} else {
		img, name, err := inlineForWeChat(data)
		if err != nil {
			return "", err
		}
		if row.URL, err = s.wx.UploadArticleImage(ctx, name, img); err != nil {
			return "", err
		}
	}
	if err := s.db.Conn(ctx).Create(&row).Error; err != nil && !model.IsDuplicate(err) {
		return "", fmt.Errorf("keep wechat copy of media %d: %w", f.ID, err)
	}
	if kind == model.WxImageThumb {
		return row.MediaID, nil
	}
	return row.URL, nil
}

// PublishFinished records the end of a publish task, from the
// PUBLISHJOBFINISH event or from polling. A task already ended, or not
// ours, is ignored.
func (s *Articles) PublishFinished(ctx context.Context, r wxconfig.PublishResult) error {
	if r.Status == wxconfig.PublishRunning {
		return nil
	}
	var p model.ArticlePublication
	err := s.db.Conn(ctx).Where("publish_id = ? AND status = ?", r.PublishID, model.PublicationPublishing).Take(&p).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("publication %s: %w", r.PublishID, err)
	}
	now := s.now().UTC()
	defer s.listed.forget()
	return s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		if r.Status == wxconfig.PublishOK && len(r.URLs) > 0 {
			res := db.Model(&model.ArticlePublication{}).Where("id = ? AND status = ?", p.ID, model.PublicationPublishing).
				Updates(map[string]any{"status": model.PublicationPublished, "article_url": r.URLs[0], "wx_article_id": r.ArticleID, "finished_at": now})
			if res.Error != nil || res.RowsAffected == 0 {
				return res.Error
			}
			return db.Model(&model.Article{}).Where("id = ?", p.ArticleID).Updates(map[string]any{"status": model.ArticlePublished,
				"article_url": r.URLs[0], "published_version": p.Version, "published_at": now, "fail_reason": ""}).Error
		}
		why := wxconfig.PublishMeaning(r.Status)
		if len(r.FailIdx) > 0 {
			why += "（第 " + joinInts(r.FailIdx) + " 篇）"
		}
		res := db.Model(&model.ArticlePublication{}).Where("id = ? AND status = ?", p.ID, model.PublicationPublishing).
			Updates(map[string]any{"status": model.PublicationFailed, "fail_reason": why, "fail_idx": joinInts(r.FailIdx), "finished_at": now})
		if res.Error != nil || res.RowsAffected == 0 {
			return res.Error
		}
		return db.Model(&model.Article{}).Where("id = ?", p.ArticleID).Updates(map[string]any{"status": model.ArticleFailed, "fail_reason": why}).Error
	})
}

func joinInts(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, ",")
}

// PollPublishing asks WeChat about the publish tasks whose event has not
// come within PollAfter, and ends those WeChat has ended. It returns how
// many it asked about.
func (s *Articles) PollPublishing(ctx context.Context) (int, error) {
	now := s.now().UTC()
	var ps []model.ArticlePublication
	if err := s.db.Conn(ctx).Where("status = ? AND polled_at < ?", model.PublicationPublishing, now.Add(-s.PollAfter)).
		Order("polled_at").Limit(20).Find(&ps).Error; err != nil {
		return 0, fmt.Errorf("publications to poll: %w", err)
	}
	asked := 0
	for _, p := range ps {
		// One instance asks: the one that moves polled_at.
		res := s.db.Conn(ctx).Model(&model.ArticlePublication{}).Where("id = ? AND polled_at = ?", p.ID, p.PolledAt).Update("polled_at", now)
		if res.Error != nil {
			return asked, fmt.Errorf("claim poll of publication %d: %w", p.ID, res.Error)
		}
		if res.RowsAffected == 0 {
			continue
		}
		asked++
		r, err := s.wx.PublishStatus(ctx, p.PublishID)
		if err != nil {
			s.log.Warn("articles: freepublish get", "publication", p.ID, "err", err)
			continue
		}
		if r.PublishID == "" {
			r.PublishID = p.PublishID
		}
		if err := s.PublishFinished(ctx, r); err != nil {
			return asked, err
		}
	}
	return asked, nil
}

// draftFor returns WeChat's draft of the article's current version, for a
// preview or a mass send, adding it (and uploading what WeChat lacks) the
// first time.
func (s *Articles) draftFor(ctx context.Context, a *model.Article) (string, error) {
	if a.CoverFileID == 0 {
		return "", ErrArticleNoCover
	}
	var d model.WxDraft
	err := s.db.Conn(ctx).Where("article_id = ? AND version = ?", a.ID, a.Version).Take(&d).Error
	if err == nil {
		return d.MediaID, nil
	}
	if !errors.Is(err, gorm.ErrRecordNotFound) {
		return "", fmt.Errorf("draft of article %d: %w", a.ID, err)
	}
	content, err := s.wechatContent(ctx, a.Content)
	if err != nil {
		return "", err
	}
	thumb, err := s.wxThumb(ctx, a.CoverFileID)
	if err != nil {
		return "", err
	}
	mediaID, err := s.wx.AddDraft(ctx, []wxconfig.DraftArticle{{Title: a.Title, Author: a.Author, Digest: a.Digest, Content: content, ThumbMediaID: thumb}})
	if err != nil {
		return "", err
	}
	d = model.WxDraft{ArticleID: a.ID, Version: a.Version, MediaID: mediaID, CreatedAt: s.now().UTC()}
	if err := s.db.Conn(ctx).Create(&d).Error; err != nil {
		if model.IsDuplicate(err) { // made at the same moment elsewhere: use that one
			if err := s.db.Conn(ctx).Where("article_id = ? AND version = ?", a.ID, a.Version).Take(&d).Error; err == nil {
				return d.MediaID, nil
			}
		}
		return "", fmt.Errorf("keep draft of article %d: %w", a.ID, err)
	}
	return mediaID, nil
}

// ErrPreviewTarget: a preview needs the staff member's openid or WeChat
// account name.
var ErrPreviewTarget = model.NewError(model.KindInvalid, "invalid_preview", "请填写接收预览的微信号或 openid")

// Preview sends the article, as the mass send would show it, to one
// person's WeChat (a staff member's own): by openid or WeChat account name.
func (s *Articles) Preview(ctx context.Context, by Principal, id uint64, openID, wxName string) error {
	if err := by.must(ActArticles); err != nil {
		return err
	}
	openID, wxName = strings.TrimSpace(openID), strings.TrimSpace(wxName)
	if (openID == "") == (wxName == "") || len(openID) > 64 || len(wxName) > 64 {
		return ErrPreviewTarget
	}
	a, err := s.get(ctx, id)
	if err != nil {
		return err
	}
	mediaID, err := s.draftFor(ctx, a)
	if err != nil {
		return wechatRefusal(err)
	}
	if err := s.wx.MassPreview(ctx, openID, wxName, wxconfig.MassMessage{MediaID: mediaID}); err != nil {
		return wechatRefusal(err)
	}
	return s.audit.Record(ctx, by, "article.preview", nil, "article "+strconv.FormatUint(id, 10))
}

// wechatRefusal turns a WeChat error into one staff can read: WeChat down
// (503), or refused (422 wechat_refused, its errcode in Chinese); other
// errors pass.
func wechatRefusal(err error) error {
	var werr *wxconfig.Error
	if !errors.As(err, &werr) {
		return err
	}
	switch werr.Outcome() {
	case wxconfig.OutcomeRetry, wxconfig.OutcomeUnknown, wxconfig.OutcomeRefreshToken:
		return fmt.Errorf("%w: %v", ErrWeChatDown, err)
	}
	return ErrWeChatRefused.WithMessage("%s", werr.Chinese()).WithDetails(map[string]any{"errcode": werr.Code})
}
