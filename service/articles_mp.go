package service

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"

	"careloop/model"
)

// The mini-program's side of self-media: the published articles, read and
// shared by patients. An article once published stays listed (an edit
// shows at once; WeChat keeps the version last published there).

// ErrArticleNotFound: no such published article.
var ErrArticleNotFound = model.NewError(model.KindNotFound, "article_not_found", "文章不存在或已下线")

// PublicArticle is an article as a patient reads it.
type PublicArticle struct {
	ArticleView
	// Package is the package the article promotes, when it is bookable.
	Package *model.Package
}

// published selects the articles patients may read.
func (s *Articles) published(ctx context.Context) *gorm.DB {
	return s.db.Conn(ctx).Model(&model.Article{}).Where("published_version > 0")
}

// publishedTTL is how long a page of the published list is served from
// memory: the list is the same for every patient, and an article published
// or edited shows within it (on every instance).
const publishedTTL = 5 * time.Second

type publishedPage struct {
	rows []ArticleView
	next string
	at   time.Time
}

// publishedCache keeps pages of the published list per (category, cursor,
// limit), for publishedTTL.
type publishedCache struct {
	mu    sync.Mutex
	pages map[string]publishedPage
}

func (c *publishedCache) get(key string, now time.Time) (publishedPage, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.pages[key]
	return p, ok && now.Sub(p.at) < publishedTTL
}

func (c *publishedCache) put(key string, p publishedPage) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pages == nil || len(c.pages) > 512 {
		c.pages = map[string]publishedPage{}
	}
	c.pages[key] = p
}

// forget drops every page (this instance's articles changed).
func (c *publishedCache) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pages = nil
}

// PublishedList lists the published articles, newest first, of one
// category or all.
func (s *Articles) PublishedList(ctx context.Context, p Principal, category, cursor string, limit int) ([]ArticleView, string, error) {
	if !p.IsPatient() {
		return nil, "", model.ErrForbidden
	}
	if category != "" {
		if _, ok := model.ArticleCategories[category]; !ok {
			return nil, "", ErrArticleInvalid.WithMessage("分类不存在")
		}
	}
	key := category + "|" + cursor + "|" + strconv.Itoa(limit)
	now := s.now()
	if pg, ok := s.listed.get(key, now); ok {
		return pg.rows, pg.next, nil
	}
	q := s.published(ctx).Omit("content")
	if category != "" {
		q = q.Where("category = ?", category)
	}
	rows, next, err := page(q, "id", cursor, limit, func(a model.Article) uint64 { return a.ID })
	if err != nil {
		return nil, "", err
	}
	out, err := s.views(ctx, rows)
	if err != nil {
		return nil, "", err
	}
	s.listed.put(key, publishedPage{rows: out, next: next, at: now})
	return out, next, nil
}

// Read returns a published article to a patient and counts the reading:
// every opening in ReadCount, each patient once in ReaderCount.
func (s *Articles) Read(ctx context.Context, p Principal, id uint64) (*PublicArticle, error) {
	if !p.IsPatient() {
		return nil, model.ErrForbidden
	}
	var a model.Article
	if err := s.published(ctx).Where("id = ?", id).Take(&a).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, ErrArticleNotFound
		}
		return nil, fmt.Errorf("article %d: %w", id, err)
	}
	now := s.now().UTC()
	// No transaction: an insert refused as a duplicate inside one would
	// hold a shared lock that a racing reader's update deadlocks on.
	err := s.countRead(ctx, id, p.ID, now)
	if err != nil {
		return nil, fmt.Errorf("count reading of article %d: %w", id, err)
	}
	vs, err := s.views(ctx, []model.Article{a})
	if err != nil {
		return nil, err
	}
	out := PublicArticle{ArticleView: vs[0]}
	if a.PackageID != nil {
		var pkg model.Package
		if err := s.db.Conn(ctx).Where("id = ? AND active = ?", *a.PackageID, true).Take(&pkg).Error; err == nil {
			out.Package = &pkg
		} else if !errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, fmt.Errorf("package of article %d: %w", id, err)
		}
	}
	return &out, nil
}

// Share records that a patient shared a published article, and where
// (the mini-program's share scene).
func (s *Articles) Share(ctx context.Context, p Principal, id uint64, scene string) error {
	if !p.IsPatient() {
		return model.ErrForbidden
	}
	scene = strings.TrimSpace(scene)
	if scene == "" || len(scene) > 32 {
		return ErrArticleInvalid.WithMessage("请说明分享场景（scene）")
	}
	if err := s.published(ctx).Where("id = ?", id).Take(&model.Article{}).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return ErrArticleNotFound
		}
		return fmt.Errorf("article %d: %w", id, err)
	}
	return s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		if err := db.Create(&model.ArticleShare{ArticleID: id, PatientID: p.ID, Scene: scene, CreatedAt: s.now().UTC()}).Error; err != nil {
			return fmt.Errorf("record share of article %d: %w", id, err)
		}
		return db.Model(&model.Article{}).Where("id = ?", id).UpdateColumn("share_count", gorm.Expr("share_count + 1")).Error
	})
}

// countRead counts one opening of article id by patient: the patient's
// row is bumped or, the first time, created (a racing first opening finds
// the row and bumps it), then the article's counters.
func (s *Articles) countRead(ctx context.Context, id, patientID uint64, now time.Time) error {
	db := s.db.Conn(ctx)
	bump := func() (bool, error) {
		res := db.Model(&model.ArticleRead{}).Where("article_id = ? AND patient_id = ?", id, patientID).
			Updates(map[string]any{"count": gorm.Expr("count + 1"), "last_at": now})
		return res.RowsAffected > 0, res.Error
	}
	readers := 0
	found, err := bump()
	if err != nil {
		return err
	}
	if !found {
		err := db.Create(&model.ArticleRead{ArticleID: id, PatientID: patientID, Count: 1, FirstAt: now, LastAt: now}).Error
		switch {
		case err == nil:
			readers = 1
		case model.IsDuplicate(err):
			if _, err := bump(); err != nil {
				return err
			}
		default:
			return err
		}
	}
	return db.Model(&model.Article{}).Where("id = ?", id).UpdateColumns(map[string]any{
		"read_count": gorm.Expr("read_count + 1"), "reader_count": gorm.Expr("reader_count + ?", readers)}).Error
}
