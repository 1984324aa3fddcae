package handler

import (
	"bytes"
	"html/template"
	"net/http"
	"sort"
	"strings"

	"github.com/gin-gonic/gin"
	"gopkg.in/yaml.v3"
)

type docs struct {
	spec []byte
}

// Register mounts the spec and its human page.
func (d docs) Register(r gin.IRoutes) {
	page := renderDocs(d.spec)
	r.GET("/api/openapi.yaml", func(c *gin.Context) {
		c.Data(http.StatusOK, "application/yaml; charset=utf-8", d.spec)
	})
	r.GET("/api/docs", func(c *gin.Context) {
		c.Data(http.StatusOK, "text/html; charset=utf-8", page)
	})
}

type docOp struct {
	Method, Path, Summary, Description, Tag string
	Auth                                    bool
}

// specDoc is the part of an OpenAPI document the page shows.
type specDoc struct {
	Info struct {
		Title       string `yaml:"title"`
		Version     string `yaml:"version"`
		Description string `yaml:"description"`
	} `yaml:"info"`
	Paths map[string]map[string]yaml.Node `yaml:"paths"`
}

type specOp struct {
	Summary     string           `yaml:"summary"`
	Description string           `yaml:"description"`
	Tags        []string         `yaml:"tags"`
	Security    []map[string]any `yaml:"security"`
}

var docsTmpl = template.Must(template.New("docs").Parse(`<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{{.Title}} API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:0}.ver{color:#888}.op{border:1px solid #e3e3e3;border-radius:6px;margin:.5em 0;padding:.6em .8em}
.m{display:inline-block;min-width:4.5em;font-weight:600;font-family:monospace}.GET{color:#0a7}.POST{color:#07c}.PUT{color:#c80}.DELETE{color:#c33}.PATCH{color:#a5c}
code{font-size:1.05em}.lock{color:#999;font-size:.85em}.d{color:#555;margin:.3em 0 0 4.9em;white-space:pre-wrap}h2{margin-top:1.5em;border-bottom:1px solid #eee}
</style></head><body>
<h1>{{.Title}}</h1><div class="ver">版本 {{.Version}} · <a href="/api/openapi.yaml">openapi.yaml</a></div>
<p>{{.Description}}</p>
{{range .Groups}}<h2>{{.Tag}}</h2>{{range .Ops}}<div class="op"><span class="m {{.Method}}">{{.Method}}</span> <code>{{.Path}}</code>
{{if .Auth}}<span class="lock">🔒 Bearer</span>{{end}} — {{.Summary}}{{if .Description}}<div class="d">{{.Description}}</div>{{end}}</div>{{end}}{{end}}
</body></html>`))

type docGroup struct {
	Tag string
	Ops []docOp
}

func renderDocs(spec []byte) []byte {
	var s specDoc
	if err := yaml.Unmarshal(spec, &s); err != nil {
		return []byte("<!doctype html><p>openapi.yaml does not parse: " + template.HTMLEscapeString(err.Error()) + "</p>")
	}
	byTag := map[string][]docOp{}
	for path, ops := range s.Paths {
		for method, node := range ops {
			switch method {
			case "get", "put", "post", "delete", "patch":
			default:
				continue // path-level parameters and the like
			}
			var op specOp
			if err := node.Decode(&op); err != nil {
				continue
			}
			tag := "other"
			if len(op.Tags) > 0 {
				tag = op.Tags[0]
			}
			byTag[tag] = append(byTag[tag], docOp{Method: strings.ToUpper(method), Path: path, Summary: op.Summary,
				Description: strings.TrimSpace(op.Description), Tag: tag, Auth: op.Security == nil || len(op.Security) > 0})
		}
	}
	var groups []docGroup
	for tag, ops := range byTag {
		sort.Slice(ops, func(i, j int) bool {
			if ops[i].Path != ops[j].Path {
				return ops[i].Path < ops[j].Path
			}
			return ops[i].Method < ops[j].Method
		})
		groups = append(groups, docGroup{Tag: tag, Ops: ops})
	}
	sort.Slice(groups, func(i, j int) bool { return groups[i].Tag < groups[j].Tag })
	var buf bytes.Buffer
	_ = docsTmpl.Execute(&buf, map[string]any{"Title": s.Info.Title, "Version": s.Info.Version, "Description": s.Info.Description, "Groups": groups})
	return buf.Bytes()
}
