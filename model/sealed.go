package model

import (
	"context"
	"encoding/base64"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"

	"gorm.io/gorm/schema"
)

// TextSealer seals and opens values (service.Sealer satisfies it).
type TextSealer interface {
	Seal(plain []byte) []byte
	Open(sealed []byte) ([]byte, error)
}

var textSealer atomic.Pointer[TextSealer]

// UseSealer makes the "sealed" columns (chat messages, complaint texts, task
// notes, interpretations, notification parameters, official-account
// events) seal with s. Every process sets it once at start-up.
func UseSealer(s TextSealer) { textSealer.Store(&s) }

// sealedPrefix starts a sealed text column's value: "s1:" and the
// base64 of the sealed bytes. Anything else is read as written (values
// from before sealing; rotate-key seals them).
const sealedPrefix = "s1:"

// SealText is the stored form of a sealed text column, for map updates
// (which GORM writes without the serializer).
func SealText(plain string) string {
	p := textSealer.Load()
	if p == nil || plain == "" {
		return plain
	}
	return sealedPrefix + base64.StdEncoding.EncodeToString((*p).Seal([]byte(plain)))
}

// OpenText reads a sealed text column's stored value.
func OpenText(stored string) (string, error) {
	b64, ok := strings.CutPrefix(stored, sealedPrefix)
	if !ok {
		return stored, nil
	}
	p := textSealer.Load()
	if p == nil {
		return "", fmt.Errorf("a sealed column is read before UseSealer")
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", fmt.Errorf("sealed column: %w", err)
	}
	plain, err := (*p).Open(raw)
	if err != nil {
		return "", err
	}
	return string(plain), nil
}

// IsSealedText reports whether a stored value is sealed.
func IsSealedText(stored string) bool { return strings.HasPrefix(stored, sealedPrefix) }

// sealedSerializer is the "sealed" GORM serializer of string fields.
type sealedSerializer struct{}

func (sealedSerializer) Scan(ctx context.Context, field *schema.Field, dst reflect.Value, dbValue any) error {
	var stored string
	switch v := dbValue.(type) {
	case nil:
	case string:
		stored = v
	case []byte:
		stored = string(v)
	default:
		return fmt.Errorf("sealed column %s: unexpected %T", field.Name, dbValue)
	}
	plain, err := OpenText(stored)
	if err != nil {
		return fmt.Errorf("open %s: %w", field.Name, err)
	}
	return field.Set(ctx, dst, plain)
}

func (sealedSerializer) Value(_ context.Context, _ *schema.Field, _ reflect.Value, fieldValue any) (any, error) {
	s, _ := fieldValue.(string)
	return SealText(s), nil
}

func init() { schema.RegisterSerializer("sealed", sealedSerializer{}) }
