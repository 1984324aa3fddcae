package wxconfig_test

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/xml"
	"sort"
	"strings"
	"testing"
	"time"

	"careloop/wxconfig"
	"careloop/wxsandbox"
)

// FuzzCallback feeds arbitrary bodies to the safe-mode opener and the
// message parser: no panic, and nothing opens without the right signature.
//
//	go test -run '^$' -fuzz FuzzCallback -fuzztime 60s ./wxconfig
func FuzzCallback(f *testing.F) {
	const token, aes, app = "tok", "c2FuZGJveC1hZXMta2V5LWZvci1jYXJlbG9vcC0wMDA", "wxapp"
	now := time.Unix(1795500000, 0)
	good, _ := wxsandbox.BuildCallback(token, aes, app, wxsandbox.TextMessage("u", "你好", 1, now), true, now)
	f.Add(good.Body, good.Query.Get("msg_signature"))
	f.Add(good.Body, strings.Repeat("0", 40)) // a real body under a wrong signature must not open
	f.Add([]byte("<xml><Encrypt><![CDATA[]]></Encrypt></xml>"), "")
	f.Add([]byte("<xml><FromUserName>a</FromUserName><MsgType>text</MsgType></xml>"), "x")
	f.Add([]byte("<<<"), "")
	key, _ := wxconfig.AESKey(aes)
	ts, nonce := good.Query.Get("timestamp"), good.Query.Get("nonce")
	f.Fuzz(func(t *testing.T, body []byte, sig string) {
		plain, err := wxconfig.OpenSafe(token, key, app, sig, ts, nonce, body)
		if err == nil {
			// Whatever opened must carry the signature WeChat computes over
			// its Encrypt element, and be for this app.
			var env struct {
				Encrypt string `xml:"Encrypt"`
			}
			if xml.Unmarshal(body, &env) != nil || env.Encrypt == "" {
				t.Fatalf("opened a body with no Encrypt element: %q", body)
			}
			parts := []string{token, ts, nonce, env.Encrypt}
			sort.Strings(parts)
			want := sha1.Sum([]byte(strings.Join(parts, "")))
			if !strings.EqualFold(sig, hex.EncodeToString(want[:])) {
				t.Fatalf("opened with a signature that does not cover the body: sig=%q", sig)
			}
			_, _ = wxconfig.ParseMessage(plain)
		}
		_, _ = wxconfig.ParseMessage(body)
	})
}
