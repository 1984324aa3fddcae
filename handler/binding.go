package handler

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/go-playground/validator/v10"

	"careloop/model"
)

// bindJSON decodes the body into dst or records a 400 (or 413) whose
// message says, in Chinese, what is wrong and with which field: never the
// decoder's own words (Go types, "EOF", "json:").
func bindJSON(c *gin.Context, dst any) bool {
	if err := c.ShouldBindJSON(dst); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			fail(c, model.ErrTooLarge)
			return false
		}
		fail(c, model.ErrInvalid.WithMessage("%s", bodyError(err, dst)))
		return false
	}
	return true
}

// bodyError explains a decoding or validation error of a JSON body.
func bodyError(err error, dst any) string {
	var (
		typeErr *json.UnmarshalTypeError
		syntax  *json.SyntaxError
		invalid validator.ValidationErrors
		unmarsh *json.InvalidUnmarshalError
	)
	switch {
	case errors.Is(err, io.EOF):
		return "请求体不能为空，应为 JSON 对象"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "请求体不完整，不是有效的 JSON"
	case errors.As(err, &syntax):
		return fmt.Sprintf("请求体不是有效的 JSON（第 %d 个字节附近）", syntax.Offset)
	case errors.As(err, &typeErr):
		if typeErr.Field == "" {
			return "请求体应为 JSON 对象"
		}
		return fmt.Sprintf("字段 %s 的类型不正确，应为%s", typeErr.Field, kindName(typeErr.Type))
	case errors.As(err, &invalid) && len(invalid) > 0:
		f := invalid[0]
		name := jsonName(dst, f.StructNamespace())
		switch f.Tag() {
		case "required":
			return fmt.Sprintf("缺少必填字段 %s", name)
		case "min", "gte", "gt":
			return fmt.Sprintf("字段 %s 过小或过短（至少 %s）", name, f.Param())
		case "max", "lte", "lt":
			return fmt.Sprintf("字段 %s 过大或过长（至多 %s）", name, f.Param())
		case "oneof":
			return fmt.Sprintf("字段 %s 只能是 %s 之一", name, f.Param())
		}
		return fmt.Sprintf("字段 %s 的值不符合要求", name)
	case errors.As(err, &unmarsh):
		return "请求格式不正确"
	}
	return "请求格式不正确，应为 JSON 对象"
}

// kindName says in Chinese what a JSON value of Go type t looks like.
func kindName(t reflect.Type) string {
	if t == nil {
		return "正确的类型"
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "文本"
	case reflect.Bool:
		return " true 或 false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "整数"
	case reflect.Float32, reflect.Float64:
		return "数字"
	case reflect.Slice, reflect.Array:
		return "数组"
	case reflect.Map, reflect.Struct:
		return "对象"
	}
	return "正确的类型"
}

// jsonName turns a validator namespace ("req.Items[0].Name") into the
// body's field path ("items[0].name") by the json tags of dst's type.
func jsonName(dst any, ns string) string {
	t := reflect.TypeOf(dst)
	parts := strings.Split(ns, ".")
	if len(parts) > 1 {
		parts = parts[1:] // the struct's own name
	}
	out := make([]string, 0, len(parts))
	for _, p := range parts {
		name, idx, _ := strings.Cut(p, "[")
		for t != nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map) {
			t = t.Elem()
		}
		js := name
		if t != nil && t.Kind() == reflect.Struct {
			if f, ok := t.FieldByName(name); ok {
				if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag != "" && tag != "-" {
					js = tag
				}
				t = f.Type
			} else {
				t = nil
			}
		}
		if idx != "" {
			js += "[" + idx
		}
		out = append(out, js)
	}
	return strings.Join(out, ".")
}
