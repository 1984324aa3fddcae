package app_test

import (
	"fmt"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"careloop/api"
	"careloop/app"
)

// goInternals are words of Go's decoder and type system that must never
// reach a person.
var goInternals = regexp.MustCompile(`json:|EOF|struct|int64|uint64|int32|float64|\bbool\b|\bstring\b|map\[|\[\]|Go value|unmarshal|handler\.|service\.|model\.`)

// wrongValue is a JSON value of another type than the schema asks.
func wrongValue(schema map[string]any) any {
	switch schema["type"] {
	case "string":
		return 12345
	case "integer", "number", "boolean":
		return "不是数字"
	case "array":
		return map[string]any{"a": 1}
	case "object":
		return 7
	}
	return []int{1}
}

type specDoc struct {
	Paths      map[string]map[string]any `yaml:"paths"`
	Components struct {
		Schemas map[string]map[string]any `yaml:"schemas"`
	} `yaml:"components"`
}

// resolve follows a $ref and merges allOf, one level deep.
func (d specDoc) resolve(s map[string]any) map[string]any {
	if ref, ok := s["$ref"].(string); ok {
		return d.resolve(d.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")])
	}
	if all, ok := s["allOf"].([]any); ok {
		out := map[string]any{"type": "object", "properties": map[string]any{}}
		for _, part := range all {
			p := d.resolve(part.(map[string]any))
			for k, v := range asMap(p["properties"]) {
				out["properties"].(map[string]any)[k] = v
			}
		}
		return out
	}
	return s
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// Malformed bodies on every JSON route answer a 4xx whose Chinese message
// names the field and holds nothing of Go's internals.
func TestMalformedBodiesSpeakChinese(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	h := a.Router
	var doc specDoc
	if err := yaml.Unmarshal(api.Spec, &doc); err != nil {
		t.Fatal(err)
	}
	ptok, _ := login(t, h, "dev:malformed")
	stok := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
	param := regexp.MustCompile(`\{[a-z_]+\}`)
	routes := 0
	for path, ops := range doc.Paths {
		if !strings.HasPrefix(path, "/api/mp/") && !strings.HasPrefix(path, "/api/admin/") {
			continue // WeChat's callbacks, signed integrations and the sandbox have their own contracts
		}
		for method, o := range ops {
			op := asMap(o)
			body := asMap(op["requestBody"])
			schema := asMap(asMap(asMap(asMap(body["content"])["application/json"])["schema"]))
			if schema == nil {
				continue
			}
			schema = doc.resolve(schema)
			routes++
			tok := ptok
			if strings.HasPrefix(path, "/api/admin/") {
				tok = stok
			}
			url := param.ReplaceAllString(path, "1")
			bodies := []string{"", "{", `{"a": }`, "[1, 2]", "12", `"text"`}
			wrong := map[string]any{}
			for name, p := range asMap(schema["properties"]) {
				wrong[name] = wrongValue(doc.resolve(asMap(p)))
			}
			for name, v := range wrong { // one wrong field at a time, so that each is named
				bodies = append(bodies, jsonOf(map[string]any{name: v}))
			}
			for _, b := range bodies {
				r := call(t, h, strings.ToUpper(method), url, tok, b)
				e := asMap(r.Body["error"])
				msg, _ := e["message"].(string)
				switch {
				case r.Status >= 500:
					t.Errorf("%s %s %s: %d %s", method, path, b, r.Status, r.Raw)
				case r.Status < 400:
					continue // a body some routes accept (all fields optional)
				case msg == "":
					t.Errorf("%s %s %s: %d without a message", method, path, b, r.Status)
				case goInternals.MatchString(msg):
					t.Errorf("%s %s %s: Go internals reach people: %q", method, path, b, msg)
				case r.Status == 400 && strings.HasPrefix(b, "{\"") && !strings.Contains(b, `"a"`):
					var field string
					for k := range wrong {
						if strings.Contains(b, fmt.Sprintf("%q", k)) {
							field = k
						}
					}
					if e["code"] == "invalid_request" && !strings.Contains(msg, field) && !strings.Contains(msg, "缺少") {
						t.Errorf("%s %s %s: the message does not name the field %s: %q", method, path, b, field, msg)
					}
				}
			}
		}
	}
	if routes < 40 {
		t.Fatalf("only %d routes with a JSON body found in the spec", routes)
	}
}
