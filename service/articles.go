package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/microcosm-cc/bluemonday"
	"gorm.io/gorm"

	"careloop/model"
	"careloop/wxconfig"
)

// ArticleWeChat is what publishing needs of WeChat (wxconfig.Clients).
type ArticleWeChat interface {
	UploadArticleImage(ctx context.Context, filename string, data []byte) (string, error)
	AddThumb(ctx context.Context, filename string, data []byte) (string, error)
	AddDraft(ctx context.Context, articles []wxconfig.DraftArticle) (string, error)
	SubmitPublish(ctx context.Context, mediaID string) (string, string, error)
	PublishStatus(ctx context.Context, publishID string) (wxconfig.PublishResult, error)
	MassPreview(ctx context.Context, openID, wxName string, m wxconfig.MassMessage) error
}

// Articles is self-media: articles written in the console, their images,
// their publishing to the official account (PublishWorker), and their
// reading in the mini-program.
type Articles struct {
	db    *model.DB
	files FileStore
	wx    ArticleWeChat
	audit *Audit
	log   *slog.Logger
	now   func() time.Time
	// PollAfter is how long a publish task may go without its
	// PUBLISHJOBFINISH event before freepublish/get is asked (and asked
	// again as often).
	PollAfter time.Duration
	// Lease is how long a worker keeps a publication it is submitting.
	Lease time.Duration
	wake  doorbell
	// listed serves the mini-program's list for a few seconds.
	listed publishedCache
}

// NewArticles returns the self-media use cases.
func NewArticles(db *model.DB, files FileStore, wx ArticleWeChat, audit *Audit, log *slog.Logger, now func() time.Time) *Articles {
	if now == nil {
		now = time.Now
	}
	return &Articles{db: db, files: files, wx: wx, audit: audit, log: log, now: now,
		PollAfter: time.Minute, Lease: 2 * time.Minute, wake: newDoorbell()}
}

// WeChat's limits on an article (draft/add), counted in characters.
const (
	ArticleTitleMax   = 32
	ArticleAuthorMax  = 16
	ArticleDigestMax  = 128
	ArticleContentMax = 20000   // characters, exclusive
	ArticleBytesMax   = 1 << 20 // bytes, exclusive
)

// Article errors.
var (
	ErrArticleInvalid    = model.NewError(model.KindInvalid, "invalid_article", "文章内容不符合要求")
	ErrArticleBusy       = model.NewError(model.KindConflict, "article_publishing", "文章正在发布中，请等发布结束后再操作")
	ErrArticleNoCover    = model.NewError(model.KindRule, "cover_required", "发布前请设置封面图")
	ErrArticleForeignImg = model.NewError(model.KindInvalid, "foreign_image", "文章中的图片须先上传到本系统（外部图片无法发布到公众号）")
	ErrMediaNotFound     = model.NewError(model.KindInvalid, "media_not_found", "图片不存在，请重新上传")
)

// ArticleInput is what staff write.
type ArticleInput struct {
	Title       string
	Author      string
	Digest      string
	Content     string
	CoverFileID uint64
	Category    string
	PackageID   *uint64
}

// mediaKeyRe is a media file's key; mediaSrcRe finds our images in HTML.
var (
	mediaKeyRe = regexp.MustCompile(`^[0-9a-f]{32}\.(jpg|png|gif|webp)$`)
	mediaSrcRe = regexp.MustCompile(`src="(/media/[0-9a-f]{32}\.(?:jpg|png|gif|webp))"`)
	imgSrcRe   = regexp.MustCompile(`<img[^>]*?\ssrc="([^"]*)"`)
)

// MediaPath is where anyone fetches a media file.
func MediaPath(key string) string { return "/media/" + key }

var articlePolicy = func() *bluemonday.Policy {
	p := bluemonday.UGCPolicy()
	p.AllowElements("section", "span", "figure", "figcaption", "u", "s")
	p.AllowStyles("color", "background-color", "text-align", "font-size", "font-weight", "font-style",
		"text-decoration", "line-height", "text-indent", "margin", "margin-top", "margin-bottom", "margin-left",
		"margin-right", "padding", "width", "max-width", "height", "border", "border-radius").Globally()
	// WeChat's own video player, and nothing else, may be embedded.
	p.AllowAttrs("src").Matching(regexp.MustCompile(`^https://v\.qq\.com/`)).OnElements("iframe")
	p.AllowAttrs("width", "height", "frameborder", "allowfullscreen").OnElements("iframe")
	return p
}()

// SanitizeArticle keeps the HTML a WeChat article may hold: no script, no
// event handler, no foreign frame, no javascript: link.
func SanitizeArticle(html string) string {
	return strings.TrimSpace(articlePolicy.Sanitize(html))
}

// clean checks in against WeChat's limits and sanitises it.
func (s *Articles) clean(ctx context.Context, in ArticleInput) (ArticleInput, error) {
	in.Title, in.Author, in.Digest = strings.TrimSpace(in.Title), strings.TrimSpace(in.Author), strings.TrimSpace(in.Digest)
	bad := func(msg string, field string) error {
		return ErrArticleInvalid.WithMessage("%s", msg).WithDetails(map[string]any{"field": field})
	}
	switch {
	case in.Title == "":
		return in, bad("请填写标题", "title")
	case utf8.RuneCountInString(in.Title) > ArticleTitleMax:
		return in, bad(fmt.Sprintf("标题不能超过 %d 个字", ArticleTitleMax), "title")
	case utf8.RuneCountInString(in.Author) > ArticleAuthorMax:
		return in, bad(fmt.Sprintf("作者不能超过 %d 个字", ArticleAuthorMax), "author")
	case utf8.RuneCountInString(in.Digest) > ArticleDigestMax:
		return in, bad(fmt.Sprintf("摘要不能超过 %d 个字", ArticleDigestMax), "digest")
	}
	if _, ok := model.ArticleCategories[in.Category]; !ok {
		return in, bad("请选择分类：健康科普、体检须知、医院动态或活动", "category")
	}
	in.Content = SanitizeArticle(in.Content)
	if strings.TrimSpace(imgSrcRe.ReplaceAllString(in.Content, "x")) == "" || in.Content == "" {
		return in, bad("请填写正文", "content")
	}
	if n := utf8.RuneCountInString(in.Content); n >= ArticleContentMax || len(in.Content) >= ArticleBytesMax {
		return in, bad(fmt.Sprintf("正文过长（%d 字），须少于 %d 字且小于 1MB", n, ArticleContentMax), "content")
	}
	for _, m := range imgSrcRe.FindAllStringSubmatch(in.Content, -1) {
		if !mediaSrcRe.MatchString(`src="` + m[1] + `"`) {
			return in, ErrArticleForeignImg.WithDetails(map[string]any{"src": model.Truncate(m[1], 200)})
		}
		if _, err := s.mediaByKey(ctx, strings.TrimPrefix(m[1], "/media/")); err != nil {
			return in, err
		}
	}
	if in.CoverFileID != 0 {
		if err := s.db.Conn(ctx).Where("id = ?", in.CoverFileID).Take(&model.MediaFile{}).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return in, ErrMediaNotFound.WithDetails(map[string]any{"field": "cover_file_id"})
			}
			return in, err
		}
	}
	if in.PackageID != nil {
		if err := s.db.Conn(ctx).Where("id = ?", *in.PackageID).Take(&model.Package{}).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return in, bad("推广的套餐不存在", "package_id")
			}
			return in, err
		}
	}
	return in, nil
}

func (s *Articles) mediaByKey(ctx context.Context, key string) (*model.MediaFile, error) {
	var f model.MediaFile
	if err := s.db.Conn(ctx).Where("`key` = ?", key).Take(&f).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, ErrMediaNotFound
		}
		return nil, fmt.Errorf("media %s: %w", key, err)
	}
	return &f, nil
}

// UploadMedia stores an image staff upload for an article.
func (s *Articles) UploadMedia(ctx context.Context, by Principal, data []byte) (*model.MediaFile, error) {
	if err := by.must(ActArticles); err != nil {
		return nil, err
	}
	if len(data) == 0 || len(data) > MaxMediaUpload {
		return nil, ErrBadMedia
	}
	mime, w, h, err := imageInfo(data)
	if err != nil {
		return nil, err
	}
	f := model.MediaFile{Key: randomHex(16) + "." + strings.Replace(strings.TrimPrefix(mime, "image/"), "jpeg", "jpg", 1),
		Mime: mime, Size: len(data), Width: w, Height: h, StaffID: by.ID, CreatedAt: s.now().UTC()}
	if err := s.files.Put(ctx, "media/"+f.Key, data); err != nil {
		return nil, fmt.Errorf("store media: %w", err)
	}
	if err := s.db.Conn(ctx).Create(&f).Error; err != nil {
		return nil, fmt.Errorf("record media: %w", err)
	}
	return &f, nil
}

// OpenMedia opens a media file by its key, for anyone (articles are
// public).
func (s *Articles) OpenMedia(ctx context.Context, key string) (io.ReadCloser, *model.MediaFile, error) {
	if !mediaKeyRe.MatchString(key) {
		return nil, nil, model.ErrNotFound
	}
	f, err := s.mediaByKey(ctx, key)
	if err != nil {
		if errors.Is(err, ErrMediaNotFound) {
			return nil, nil, model.ErrNotFound
		}
		return nil, nil, err
	}
	rc, err := s.files.Open(ctx, "media/"+key)
	if err != nil {
		return nil, nil, fmt.Errorf("open media %s: %w", key, err)
	}
	return rc, f, nil
}

// CoverURL is the path of a media file by id ("" when there is none).
func (s *Articles) coverPaths(ctx context.Context, ids []uint64) (map[uint64]string, error) {
	out := map[uint64]string{}
	if len(ids) == 0 {
		return out, nil
	}
	var fs []model.MediaFile
	if err := s.db.Conn(ctx).Where("id IN ?", ids).Find(&fs).Error; err != nil {
		return nil, fmt.Errorf("article covers: %w", err)
	}
	for _, f := range fs {
		out[f.ID] = MediaPath(f.Key)
	}
	return out, nil
}

// Create writes a new article, a draft.
func (s *Articles) Create(ctx context.Context, by Principal, in ArticleInput) (*model.Article, error) {
	if err := by.must(ActArticles); err != nil {
		return nil, err
	}
	in, err := s.clean(ctx, in)
	if err != nil {
		return nil, err
	}
	a := model.Article{Title: in.Title, Author: in.Author, Digest: in.Digest, Content: in.Content, CoverFileID: in.CoverFileID,
		Category: in.Category, PackageID: in.PackageID, Status: model.ArticleDraft, Version: 1, StaffID: by.ID}
	if err := s.db.Conn(ctx).Create(&a).Error; err != nil {
		return nil, fmt.Errorf("create article: %w", err)
	}
	return &a, nil
}

// Update changes an article. An article WeChat is publishing cannot
// change; a published one keeps its state (and its URL) with the change
// waiting to be published again, and the mini-program shows the change
// at once.
func (s *Articles) Update(ctx context.Context, by Principal, id uint64, in ArticleInput) (*model.Article, error) {
	if err := by.must(ActArticles); err != nil {
		return nil, err
	}
	in, err := s.clean(ctx, in)
	if err != nil {
		return nil, err
	}
	res := s.db.Conn(ctx).Model(&model.Article{}).Where("id = ? AND status NOT IN ?", id, []string{model.ArticleSubmitted, model.ArticlePublishing}).
		Updates(map[string]any{"title": in.Title, "author": in.Author, "digest": in.Digest, "content": in.Content,
			"cover_file_id": in.CoverFileID, "category": in.Category, "package_id": in.PackageID, "version": gorm.Expr("version + 1")})
	if res.Error != nil {
		return nil, fmt.Errorf("update article %d: %w", id, res.Error)
	}
	a, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	if res.RowsAffected == 0 {
		return nil, ErrArticleBusy
	}
	s.listed.forget()
	return a, nil
}

func (s *Articles) get(ctx context.Context, id uint64) (*model.Article, error) {
	var a model.Article
	if err := s.db.Conn(ctx).Where("id = ?", id).Take(&a).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil, model.ErrNotFound
		}
		return nil, fmt.Errorf("article %d: %w", id, err)
	}
	return &a, nil
}

// ArticleView is an article with what the console shows beside it.
type ArticleView struct {
	model.Article
	CoverURL string
	// Publications, newest first (one article only).
	Publications []model.ArticlePublication
	// BookingsAfterRead counts the bookings made within 7 days of a
	// patient's first reading (one article only).
	BookingsAfterRead int
}

// ArticleFilter narrows the console's list.
type ArticleFilter struct {
	Status, Category, Cursor string
	Limit                    int
}

// List lists articles, newest first.
func (s *Articles) List(ctx context.Context, by Principal, f ArticleFilter) ([]ArticleView, string, error) {
	if err := by.must(ActArticles); err != nil {
		return nil, "", err
	}
	q := s.db.Conn(ctx).Model(&model.Article{}).Omit("content")
	if f.Status != "" {
		q = q.Where("status = ?", f.Status)
	}
	if f.Category != "" {
		q = q.Where("category = ?", f.Category)
	}
	rows, next, err := page(q, "id", f.Cursor, f.Limit, func(a model.Article) uint64 { return a.ID })
	if err != nil {
		return nil, "", err
	}
	out, err := s.views(ctx, rows)
	return out, next, err
}

func (s *Articles) views(ctx context.Context, rows []model.Article) ([]ArticleView, error) {
	ids := make([]uint64, 0, len(rows))
	for _, a := range rows {
		if a.CoverFileID != 0 {
			ids = append(ids, a.CoverFileID)
		}
	}
	covers, err := s.coverPaths(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]ArticleView, len(rows))
	for i, a := range rows {
		out[i] = ArticleView{Article: a, CoverURL: covers[a.CoverFileID]}
	}
	return out, nil
}

// Get returns one article with its publications and what its readers did.
func (s *Articles) Get(ctx context.Context, by Principal, id uint64) (*ArticleView, error) {
	if err := by.must(ActArticles); err != nil {
		return nil, err
	}
	a, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	vs, err := s.views(ctx, []model.Article{*a})
	if err != nil {
		return nil, err
	}
	v := vs[0]
	if err := s.db.Conn(ctx).Where("article_id = ?", id).Order("id DESC").Find(&v.Publications).Error; err != nil {
		return nil, fmt.Errorf("publications of article %d: %w", id, err)
	}
	if v.BookingsAfterRead, err = s.bookingsAfterRead(ctx, id); err != nil {
		return nil, err
	}
	return &v, nil
}

// ReadLeadsFor is how long after a patient's first reading a booking
// counts as following it.
const ReadLeadsFor = 7 * 24 * time.Hour

// bookingsAfterRead counts the bookings made within ReadLeadsFor of the
// booker's first reading of the article.
func (s *Articles) bookingsAfterRead(ctx context.Context, id uint64) (int, error) {
	var reads []model.ArticleRead
	if err := s.db.Conn(ctx).Select("patient_id", "first_at").Where("article_id = ?", id).Find(&reads).Error; err != nil {
		return 0, fmt.Errorf("readers of article %d: %w", id, err)
	}
	first := make(map[uint64]time.Time, len(reads))
	for _, r := range reads {
		first[r.PatientID] = r.FirstAt
	}
	var bookings []model.Booking
	if err := s.db.Conn(ctx).Select("patient_id", "created_at").
		Where("patient_id IN (SELECT patient_id FROM article_reads WHERE article_id = ?)", id).Find(&bookings).Error; err != nil {
		return 0, fmt.Errorf("bookings of the readers of article %d: %w", id, err)
	}
	n := 0
	for _, b := range bookings {
		if f, ok := first[b.PatientID]; ok && !b.CreatedAt.Before(f) && b.CreatedAt.Before(f.Add(ReadLeadsFor)) {
			n++
		}
	}
	return n, nil
}
