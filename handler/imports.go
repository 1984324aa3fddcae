package handler

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// importHandlers serves HIS imports uploaded in the console: the upload
// answers at once with its job, whose progress is then polled.
type importHandlers struct {
	imports *service.Imports
}

// registerUpload mounts the upload with its own body limit, ahead of the
// router's general one.
func (h importHandlers) registerUpload(r *gin.Engine, auth *service.Auth) {
	r.POST("/api/admin/imports", authenticate(auth, model.SubjectStaff), allow(service.ActPatientsImport),
		bodyLimit(service.MaxImportBytes+1<<20), h.upload)
}

func (h importHandlers) register(rg *gin.RouterGroup) {
	may := allow(service.ActPatientsImport)
	rg.GET("/imports", may, h.list)
	rg.GET("/imports/:id", may, h.get)
	rg.GET("/imports/:id/rejected.csv", may, h.rejected)
}

// ImportJobDTO is an import job and how far it is.
type ImportJobDTO struct {
	ID          uint64 `json:"id"`
	FileName    string `json:"file_name"`
	Status      string `json:"status"`
	Total       int    `json:"total"`
	Done        int    `json:"done"`
	Percent     int    `json:"percent"`
	Created     int    `json:"created"`
	Updated     int    `json:"updated"`
	Unchanged   int    `json:"unchanged"`
	Rejected    int    `json:"rejected"`
	HasRejected bool   `json:"has_rejected"`
	Error       string `json:"error,omitempty"`
	CreatedAt   string `json:"created_at"`
	FinishedAt  string `json:"finished_at,omitempty"`
}

func importJobDTO(j *model.ImportJob) ImportJobDTO {
	pct := 0
	switch {
	case j.Status == model.ImportDone:
		pct = 100
	case j.Total > 0:
		pct = min(99, j.Done*100/j.Total)
	}
	out := ImportJobDTO{ID: j.ID, FileName: j.FileName, Status: j.Status, Total: j.Total, Done: j.Done, Percent: pct,
		Created: j.Created, Updated: j.Updated, Unchanged: j.Unchanged, Rejected: j.Rejected, HasRejected: j.ErrorsKey != "",
		Error: j.LastError, CreatedAt: model.LocalTime(j.CreatedAt)}
	if j.FinishedAt != nil {
		out.FinishedAt = model.LocalTime(*j.FinishedAt)
	}
	return out
}

func (h importHandlers) upload(c *gin.Context) {
	name := c.Query("name")
	var r io.Reader = c.Request.Body
	if strings.HasPrefix(c.ContentType(), "multipart/") {
		f, hdr, err := c.Request.FormFile("file")
		if err != nil {
			fail(c, model.ErrInvalid.WithMessage("请上传文件（表单字段 file）"))
			return
		}
		defer f.Close()
		r, name = f, hdr.Filename
	}
	data, err := io.ReadAll(io.LimitReader(r, service.MaxImportBytes+1))
	if err != nil {
		fail(c, model.ErrTooLarge)
		return
	}
	if len(data) > service.MaxImportBytes {
		fail(c, model.ErrTooLarge.WithMessage("文件超过 64 MB，请分批导入"))
		return
	}
	j, err := h.imports.Start(c.Request.Context(), principal(c), name, data)
	renderOne(c, http.StatusAccepted, j, err, importJobDTO)
}

func (h importHandlers) list(c *gin.Context) {
	limit, ok := queryLimit(c)
	if !ok {
		return
	}
	js, next, err := h.imports.List(c.Request.Context(), principal(c), c.Query("cursor"), limit)
	renderPage(c, js, next, err, importJobDTO)
}

func (h importHandlers) get(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	j, err := h.imports.Get(c.Request.Context(), principal(c), id)
	renderOne(c, http.StatusOK, j, err, importJobDTO)
}

func (h importHandlers) rejected(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	rc, j, err := h.imports.Rejected(c.Request.Context(), principal(c), id)
	if err != nil {
		fail(c, err)
		return
	}
	defer rc.Close()
	// An ASCII name for old clients, the file's own (UTF-8) for the rest.
	own := strings.TrimSuffix(strings.TrimSuffix(j.FileName, ".xlsx"), ".csv") + "-被拒绝的行.csv"
	c.Header("Content-Disposition", fmt.Sprintf(`attachment; filename="import-%d-rejected.csv"; filename*=UTF-8''%s`, j.ID, url.PathEscape(own)))
	c.Header("Content-Type", "text/csv; charset=utf-8")
	c.Status(http.StatusOK)
	_, _ = io.Copy(c.Writer, rc)
}
