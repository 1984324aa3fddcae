package service

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"time"

	"careloop/model"
)

// Errors of signed machine-to-machine requests.
var (
	ErrUnknownSource  = model.NewError(model.KindUnauthorized, "unknown_source", "unknown or missing X-Careloop-Source")
	ErrMissingSig     = model.NewError(model.KindUnauthorized, "missing_signature", "missing or malformed X-Careloop-Signature (t=<unix seconds>,v1=<hex>)")
	ErrBadSignature   = model.NewError(model.KindUnauthorized, "bad_signature", "signature does not match the body")
	ErrStaleSignature = model.NewError(model.KindUnauthorized, "stale_signature", "signature timestamp is more than 5 minutes away from now")
)

// SignatureTolerance is how far a signature's timestamp may be from now.
const SignatureTolerance = 5 * time.Minute

// ParseSecrets reads "source=secret,source2=secret2".
func ParseSecrets(s string) map[string]string {
	out := map[string]string{}
	for _, pair := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if ok && k != "" && v != "" {
			out[k] = v
		}
	}
	return out
}

// Sign returns the X-Careloop-Signature value for body at t (for senders
// and tests).
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "." + string(body)))
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// VerifySignature checks HMAC-SHA256 over timestamp + "." + body with the
// source's own secret, in constant time, and the timestamp's freshness.
func VerifySignature(secrets map[string]string, source, header string, body []byte, now time.Time) error {
	secret, ok := secrets[source]
	if source == "" || !ok {
		return ErrUnknownSource
	}
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	want, herr := hex.DecodeString(sig)
	if err != nil || herr != nil || len(want) != sha256.Size {
		return ErrMissingSig
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "." + string(body)))
	if !hmac.Equal(m.Sum(nil), want) {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(t, 0)); d > SignatureTolerance || d < -SignatureTolerance {
		return ErrStaleSignature
	}
	return nil
}
