package handler

import (
	"bytes"
	"compress/gzip"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"

	"careloop/service"
)

// DemoAccount is a sandbox staff account the sign-in page offers.
type DemoAccount struct {
	Username string `json:"username"`
	Name     string `json:"name"`
	Role     string `json:"role"`
}

// ConsoleConfig is what the console shows before sign-in.
type ConsoleConfig struct {
	Sandbox      bool          `json:"sandbox"`
	DemoPassword string        `json:"demo_password,omitempty"`
	DemoAccounts []DemoAccount `json:"demo_accounts,omitempty"`
}

// consoleCSP allows the console its own scripts, styles, images and API
// calls, and nothing from elsewhere; no inline script. Inline styles are
// allowed: the article editor writes them, and an article's formatting
// (colour, alignment) is inline style by nature.
const consoleCSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"

// console serves the staff console's built files: hashed assets cached for
// a year, index.html for every other path (the app routes itself), text
// gzipped when the browser takes it.
type console struct {
	files fs.FS
	mu    sync.Mutex
	gz    map[string][]byte // gzipped files, made on first request
}

func (h *console) register(r *gin.Engine, cfg ConsoleConfig) {
	r.GET("/api/console/config", func(c *gin.Context) { c.JSON(http.StatusOK, cfg) })
}

// serve answers GET and HEAD requests outside the API; it reports false
// when the path is not the console's.
func (h *console) serve(c *gin.Context) bool {
	p := c.Request.URL.Path
	if h.files == nil || (c.Request.Method != http.MethodGet && c.Request.Method != http.MethodHead) ||
		strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/sandbox/") || strings.HasPrefix(p, "/wechat/") {
		return false
	}
	name := strings.TrimPrefix(path.Clean(p), "/")
	body, err := fs.ReadFile(h.files, name)
	if name == "" || err != nil {
		if strings.HasPrefix(name, "assets/") {
			return false // a missing asset is a 404, not the app
		}
		name = "index.html"
		if body, err = fs.ReadFile(h.files, name); err != nil {
			return false
		}
	}
	hd := c.Writer.Header()
	hd.Set("Content-Security-Policy", consoleCSP)
	if strings.HasPrefix(name, "assets/") {
		hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hd.Set("Cache-Control", "no-cache")
	}
	ctype := mime.TypeByExtension(path.Ext(name))
	if ctype == "" {
		ctype = http.DetectContentType(body)
	}
	hd.Set("Content-Type", ctype)
	hd.Set("Vary", "Accept-Encoding")
	if compressible(ctype) && strings.Contains(c.GetHeader("Accept-Encoding"), "gzip") {
		body = h.gzipped(name, body)
		hd.Set("Content-Encoding", "gzip")
	}
	c.Status(http.StatusOK)
	if c.Request.Method == http.MethodGet {
		_, _ = c.Writer.Write(body)
	}
	return true
}

func compressible(ctype string) bool {
	return strings.HasPrefix(ctype, "text/") || strings.Contains(ctype, "javascript") || strings.Contains(ctype, "json") || strings.Contains(ctype, "svg")
}

// gzipped is the file's gzipped form: name.gz from the build (npm run
// build writes them), else compressed here once.
func (h *console) gzipped(name string, body []byte) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b, ok := h.gz[name]; ok {
		return b
	}
	if b, err := fs.ReadFile(h.files, name+".gz"); err == nil {
		if h.gz == nil {
			h.gz = map[string][]byte{}
		}
		h.gz[name] = b
		return b
	}
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = w.Write(body)
	_ = w.Close()
	if h.gz == nil {
		h.gz = map[string][]byte{}
	}
	h.gz[name] = buf.Bytes()
	return h.gz[name]
}

// meDTO is the signed-in staff member with what their role may do.
type meDTO struct {
	StaffDTO
	Actions []service.Action `json:"actions"`
}
