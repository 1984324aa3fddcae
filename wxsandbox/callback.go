package wxsandbox

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Callback is a request as WeChat would send it to a server's callback URL.
type Callback struct {
	Query url.Values
	Body  []byte
}

// BuildCallback signs (and in safe mode encrypts) body the way WeChat does:
// signature = sha1(sorted token, timestamp, nonce); in safe mode the body is
// <xml><ToUserName/><Encrypt/></xml> with msg_signature = sha1(sorted token,
// timestamp, nonce, Encrypt) and AES-256-CBC over random16|len|msg|appid.
func BuildCallback(token, encodingAESKey, appID string, body []byte, safe bool, at time.Time) (Callback, error) {
	ts := strconv.FormatInt(at.Unix(), 10)
	nonce := randDigits(10) // WeChat sends a fresh nonce with every request
	q := url.Values{"timestamp": {ts}, "nonce": {nonce}, "signature": {sandboxSHA1(token, ts, nonce)}}
	if !safe {
		return Callback{Query: q, Body: body}, nil
	}
	key, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
	if err != nil || len(key) != 32 {
		return Callback{}, fmt.Errorf("bad EncodingAESKey")
	}
	var plain bytes.Buffer
	plain.WriteString(randHex(8)) // 16 random bytes
	_ = binary.Write(&plain, binary.BigEndian, uint32(len(body)))
	plain.Write(body)
	plain.WriteString(appID)
	pad := 32 - plain.Len()%32
	plain.Write(bytes.Repeat([]byte{byte(pad)}, pad))
	block, _ := aes.NewCipher(key)
	ct := make([]byte, plain.Len())
	cipher.NewCBCEncrypter(block, key[:16]).CryptBlocks(ct, plain.Bytes())
	enc := base64.StdEncoding.EncodeToString(ct)
	q.Set("encrypt_type", "aes")
	q.Set("msg_signature", sandboxSHA1(token, ts, nonce, enc))
	env := fmt.Sprintf("<xml><ToUserName><![CDATA[%s]]></ToUserName><Encrypt><![CDATA[%s]]></Encrypt></xml>", "gh_sandbox", enc)
	return Callback{Query: q, Body: []byte(env)}, nil
}

func sandboxSHA1(parts ...string) string {
	sort.Strings(parts)
	h := sha1.Sum([]byte(strings.Join(parts, "")))
	return hex.EncodeToString(h[:])
}

// TextMessage is a user's text message to the official account.
func TextMessage(from, content string, msgID int64, at time.Time) []byte {
	return []byte(fmt.Sprintf("<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>"+
		"<CreateTime>%d</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[%s]]></Content><MsgId>%d</MsgId></xml>",
		from, at.Unix(), content, msgID))
}

// EventMessage is an event (subscribe, unsubscribe, CLICK, SCAN,
// TEMPLATESENDJOBFINISH) for the official account.
func EventMessage(from, event, key string, at time.Time, extra string) []byte {
	return []byte(fmt.Sprintf("<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>"+
		"<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[%s]]></Event><EventKey><![CDATA[%s]]></EventKey>%s</xml>",
		from, at.Unix(), event, key, extra))
}

// ImageMessage is a user's picture message to the official account.
func ImageMessage(from, picURL string, msgID int64, at time.Time) []byte {
	return []byte(fmt.Sprintf("<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName><FromUserName><![CDATA[%s]]></FromUserName>"+
		"<CreateTime>%d</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[%s]]></PicUrl>"+
		"<MediaId><![CDATA[sandbox-media-%d]]></MediaId><MsgId>%d</MsgId></xml>", from, at.Unix(), picURL, msgID, msgID))
}

// ReplyText reads the text of a server's passive reply as WeChat would:
// in safe mode it checks msg_signature over the Encrypt element and
// decrypts it. An empty reply or "success" is "".
func ReplyText(token, encodingAESKey, appID string, reply []byte, safe bool) (string, error) {
	if len(bytes.TrimSpace(reply)) == 0 || string(reply) == "success" {
		return "", nil
	}
	plain := reply
	if safe {
		var env struct {
			Encrypt      string `xml:"Encrypt"`
			MsgSignature string `xml:"MsgSignature"`
			TimeStamp    string `xml:"TimeStamp"`
			Nonce        string `xml:"Nonce"`
		}
		if err := xml.Unmarshal(reply, &env); err != nil || env.Encrypt == "" {
			return "", fmt.Errorf("reply is not an encrypted envelope")
		}
		if sandboxSHA1(token, env.TimeStamp, env.Nonce, env.Encrypt) != env.MsgSignature {
			return "", fmt.Errorf("reply signature does not match")
		}
		key, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
		if err != nil || len(key) != 32 {
			return "", fmt.Errorf("bad EncodingAESKey")
		}
		ct, err := base64.StdEncoding.DecodeString(env.Encrypt)
		if err != nil || len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
			return "", fmt.Errorf("reply ciphertext is malformed")
		}
		block, _ := aes.NewCipher(key)
		pt := make([]byte, len(ct))
		cipher.NewCBCDecrypter(block, key[:16]).CryptBlocks(pt, ct)
		pad := int(pt[len(pt)-1])
		if pad < 1 || pad > 32 || pad > len(pt)-20 {
			return "", fmt.Errorf("reply padding is malformed")
		}
		pt = pt[:len(pt)-pad]
		n := int(binary.BigEndian.Uint32(pt[16:20]))
		if 20+n > len(pt) || string(pt[20+n:]) != appID {
			return "", fmt.Errorf("reply is not for app %s", appID)
		}
		plain = pt[20 : 20+n]
	}
	var msg struct {
		Content string `xml:"Content"`
	}
	if err := xml.Unmarshal(plain, &msg); err != nil {
		return "", fmt.Errorf("reply is not a message: %w", err)
	}
	return msg.Content, nil
}

// randDigits is n random decimal digits.
func randDigits(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	return string(b)
}
