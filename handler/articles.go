package handler

import (
	"io"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// articleHandlers serve self-media: staff write and publish articles and
// upload their images; patients read and share them; anyone fetches the
// images (/media/…), as articles are public.
type articleHandlers struct {
	a *service.Articles
}

// registerUpload mounts the image upload with its own body limit, ahead of
// the router's general one, and the public images.
func (h articleHandlers) registerUpload(r *gin.Engine, auth *service.Auth) {
	r.POST("/api/admin/files", authenticate(auth, model.SubjectStaff), allow(service.ActArticles),
		bodyLimit(service.MaxMediaUpload+1<<20), h.upload)
	r.GET("/media/:key", h.media)
}

func (h articleHandlers) registerAdmin(rg *gin.RouterGroup) {
	may := allow(service.ActArticles)
	rg.GET("/articles", may, h.list)
	rg.POST("/articles", may, h.create)
	rg.GET("/articles/:id", may, h.get)
	rg.PUT("/articles/:id", may, h.update)
	rg.POST("/articles/:id/publish", may, h.publish)
}

func (h articleHandlers) registerMP(rg *gin.RouterGroup) {
	rg.GET("/articles", h.mpList)
	rg.GET("/articles/:id", h.mpGet)
	rg.POST("/articles/:id/shares", h.mpShare)
}

// MediaDTO is an uploaded image.
type MediaDTO struct {
	ID     uint64 `json:"id"`
	URL    string `json:"url"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

func (h articleHandlers) upload(c *gin.Context) {
	f, _, err := c.Request.FormFile("file")
	if err != nil {
		fail(c, model.ErrInvalid.WithMessage("请上传图片（表单字段 file）"))
		return
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, service.MaxMediaUpload+1))
	if err != nil {
		fail(c, model.ErrTooLarge)
		return
	}
	if len(data) > service.MaxMediaUpload {
		fail(c, model.ErrTooLarge.WithMessage("图片不能超过 10MB"))
		return
	}
	m, err := h.a.UploadMedia(c.Request.Context(), principal(c), data)
	renderOne(c, http.StatusCreated, m, err, func(m *model.MediaFile) MediaDTO {
		return MediaDTO{ID: m.ID, URL: service.MediaPath(m.Key), Width: m.Width, Height: m.Height}
	})
}

func (h articleHandlers) media(c *gin.Context) {
	rc, f, err := h.a.OpenMedia(c.Request.Context(), c.Param("key"))
	if err != nil {
		fail(c, err)
		return
	}
	defer rc.Close()
	// A key never names other bytes: caches may keep it for good.
	c.Header("Cache-Control", "public, max-age=31536000, immutable")
	c.Header("Content-Type", f.Mime)
	c.Status(http.StatusOK)
	_, _ = io.Copy(c.Writer, rc)
}

type articleRequest struct {
	Title       string  `json:"title" binding:"required"`
	Author      string  `json:"author"`
	Digest      string  `json:"digest"`
	Content     string  `json:"content" binding:"required"`
	CoverFileID uint64  `json:"cover_file_id"`
	Category    string  `json:"category" binding:"required"`
	PackageID   *uint64 `json:"package_id"`
}

func (r articleRequest) input() service.ArticleInput {
	return service.ArticleInput{Title: r.Title, Author: r.Author, Digest: r.Digest, Content: r.Content,
		CoverFileID: r.CoverFileID, Category: r.Category, PackageID: r.PackageID}
}

// PublicationDTO is one publishing of an article.
type PublicationDTO struct {
	ID          uint64 `json:"id"`
	Version     int    `json:"version"`
	Status      string `json:"status"`
	ArticleURL  string `json:"article_url,omitempty"`
	FailReason  string `json:"fail_reason,omitempty"`
	CreatedAt   string `json:"created_at"`
	SubmittedAt string `json:"submitted_at,omitempty"`
	FinishedAt  string `json:"finished_at,omitempty"`
}

// ArticleDTO is an article as the console shows it.
type ArticleDTO struct {
	ID               uint64           `json:"id"`
	Title            string           `json:"title"`
	Author           string           `json:"author"`
	Digest           string           `json:"digest"`
	Content          string           `json:"content,omitempty"`
	CoverFileID      uint64           `json:"cover_file_id"`
	CoverURL         string           `json:"cover_url"`
	Category         string           `json:"category"`
	CategoryName     string           `json:"category_name"`
	PackageID        *uint64          `json:"package_id"`
	Status           string           `json:"status"`
	Version          int              `json:"version"`
	PublishedVersion int              `json:"published_version"`
	HasChanges       bool             `json:"has_changes"`
	ArticleURL       string           `json:"article_url"`
	FailReason       string           `json:"fail_reason"`
	PublishedAt      string           `json:"published_at,omitempty"`
	CreatedAt        string           `json:"created_at"`
	UpdatedAt        string           `json:"updated_at"`
	Reads            int              `json:"reads"`
	Readers          int              `json:"readers"`
	Shares           int              `json:"shares"`
	BookingsAfter    *int             `json:"bookings_after_read,omitempty"`
	Publications     []PublicationDTO `json:"publications,omitempty"`
}

func articleDTO(v *service.ArticleView) ArticleDTO {
	a := v.Article
	out := ArticleDTO{ID: a.ID, Title: a.Title, Author: a.Author, Digest: a.Digest, Content: a.Content, CoverFileID: a.CoverFileID,
		CoverURL: v.CoverURL, Category: a.Category, CategoryName: model.ArticleCategories[a.Category], PackageID: a.PackageID,
		Status: a.Status, Version: a.Version, PublishedVersion: a.PublishedVersion,
		HasChanges: a.PublishedVersion > 0 && a.Version > a.PublishedVersion, ArticleURL: a.ArticleURL, FailReason: a.FailReason,
		CreatedAt: model.LocalTime(a.CreatedAt), UpdatedAt: model.LocalTime(a.UpdatedAt),
		Reads: a.ReadCount, Readers: a.ReaderCount, Shares: a.ShareCount}
	if a.PublishedAt != nil {
		out.PublishedAt = model.LocalTime(*a.PublishedAt)
	}
	return out
}

func articleDetailDTO(v *service.ArticleView) ArticleDTO {
	out := articleDTO(v)
	n := v.BookingsAfterRead
	out.BookingsAfter = &n
	out.Publications = make([]PublicationDTO, 0, len(v.Publications))
	for _, p := range v.Publications {
		d := PublicationDTO{ID: p.ID, Version: p.Version, Status: p.Status, ArticleURL: p.ArticleURL, FailReason: p.FailReason,
			CreatedAt: model.LocalTime(p.CreatedAt)}
		if p.SubmittedAt != nil {
			d.SubmittedAt = model.LocalTime(*p.SubmittedAt)
		}
		if p.FinishedAt != nil {
			d.FinishedAt = model.LocalTime(*p.FinishedAt)
		}
		out.Publications = append(out.Publications, d)
	}
	return out
}

func (h articleHandlers) list(c *gin.Context) {
	limit, ok := queryLimit(c)
	if !ok {
		return
	}
	vs, next, err := h.a.List(c.Request.Context(), principal(c), service.ArticleFilter{Status: c.Query("status"),
		Category: c.Query("category"), Cursor: c.Query("cursor"), Limit: limit})
	renderPage(c, vs, next, err, articleDTO)
}

func (h articleHandlers) create(c *gin.Context) {
	var req articleRequest
	if !bindJSON(c, &req) {
		return
	}
	a, err := h.a.Create(c.Request.Context(), principal(c), req.input())
	if err != nil {
		fail(c, err)
		return
	}
	h.answer(c, http.StatusCreated, a.ID)
}

// answer answers with the article as it now is.
func (h articleHandlers) answer(c *gin.Context, status int, id uint64) {
	v, err := h.a.Get(c.Request.Context(), principal(c), id)
	renderOne(c, status, v, err, articleDetailDTO)
}

func (h articleHandlers) get(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	h.answer(c, http.StatusOK, id)
}

func (h articleHandlers) update(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	var req articleRequest
	if !bindJSON(c, &req) {
		return
	}
	if _, err := h.a.Update(c.Request.Context(), principal(c), id, req.input()); err != nil {
		fail(c, err)
		return
	}
	h.answer(c, http.StatusOK, id)
}

func (h articleHandlers) publish(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	if _, err := h.a.Publish(c.Request.Context(), principal(c), id); err != nil {
		fail(c, err)
		return
	}
	h.answer(c, http.StatusAccepted, id)
}

// PublicArticleDTO is an article as the mini-program shows it: its images
// as absolute URLs, its content only when one article is read.
type PublicArticleDTO struct {
	ID           uint64            `json:"id"`
	Title        string            `json:"title"`
	Author       string            `json:"author"`
	Digest       string            `json:"digest"`
	CoverURL     string            `json:"cover_url"`
	Category     string            `json:"category"`
	CategoryName string            `json:"category_name"`
	PublishedAt  string            `json:"published_at"`
	Reads        int               `json:"reads"`
	Content      string            `json:"content,omitempty"`
	Package      *PublicPackageDTO `json:"package,omitempty"`
}

// PublicPackageDTO is the package an article promotes, to book.
type PublicPackageDTO struct {
	ID       uint64 `json:"id"`
	Name     string `json:"name"`
	PriceFen int64  `json:"price_fen"`
}

// absolute makes our paths (/media/…) absolute URLs on the host the
// request came to: the mini-program's rich-text component needs them.
func absolute(c *gin.Context, s string) string {
	scheme := "https"
	if c.Request.TLS == nil && c.GetHeader("X-Forwarded-Proto") != "https" {
		scheme = "http"
	}
	base := scheme + "://" + c.Request.Host
	return strings.ReplaceAll(s, `src="/media/`, `src="`+base+`/media/`)
}

func publicArticleDTO(c *gin.Context) func(v *service.ArticleView) PublicArticleDTO {
	return func(v *service.ArticleView) PublicArticleDTO {
		a := v.Article
		out := PublicArticleDTO{ID: a.ID, Title: a.Title, Author: a.Author, Digest: a.Digest, Category: a.Category,
			CategoryName: model.ArticleCategories[a.Category], Reads: a.ReadCount}
		if v.CoverURL != "" {
			out.CoverURL = strings.TrimSuffix(strings.TrimPrefix(absolute(c, `src="`+v.CoverURL+`"`), `src="`), `"`)
		}
		if a.PublishedAt != nil {
			out.PublishedAt = model.LocalTime(*a.PublishedAt)
		}
		if a.Content != "" {
			out.Content = absolute(c, a.Content)
		}
		return out
	}
}

func (h articleHandlers) mpList(c *gin.Context) {
	limit, ok := queryLimit(c)
	if !ok {
		return
	}
	vs, next, err := h.a.PublishedList(c.Request.Context(), principal(c), c.Query("category"), c.Query("cursor"), limit)
	renderPage(c, vs, next, err, publicArticleDTO(c))
}

func (h articleHandlers) mpGet(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	a, err := h.a.Read(c.Request.Context(), principal(c), id)
	renderOne(c, http.StatusOK, a, err, func(a *service.PublicArticle) PublicArticleDTO {
		out := publicArticleDTO(c)(&a.ArticleView)
		if a.Package != nil {
			out.Package = &PublicPackageDTO{ID: a.Package.ID, Name: a.Package.Name, PriceFen: a.Package.PriceFen}
		}
		return out
	})
}

type shareRequest struct {
	Scene string `json:"scene" binding:"required"`
}

func (h articleHandlers) mpShare(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	var req shareRequest
	if !bindJSON(c, &req) {
		return
	}
	if err := h.a.Share(c.Request.Context(), principal(c), id, req.Scene); err != nil {
		fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
