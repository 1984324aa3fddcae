package wxconfig

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Callback errors; each is a refusal (4xx) with nothing processed.
var (
	ErrCallbackSignature = errors.New("callback signature does not match")
	ErrCallbackStale     = errors.New("callback timestamp too far from now")
	ErrCallbackPlaintext = errors.New("plaintext message refused in safe mode")
	ErrCallbackDecrypt   = errors.New("callback message does not decrypt")
	ErrCallbackAppID     = errors.New("callback message is for another app")
	ErrCallbackXML       = errors.New("callback body is not a WeChat message")
)

// CallbackTolerance is how far a callback's timestamp may be from now.
const CallbackTolerance = 5 * time.Minute

func sha1Sorted(parts ...string) string {
	sort.Strings(parts)
	h := sha1.Sum([]byte(strings.Join(parts, "")))
	return hex.EncodeToString(h[:])
}

func equalHex(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(strings.ToLower(a)), []byte(strings.ToLower(b))) == 1
}

// VerifyURL checks the plain signature (token, timestamp, nonce) in
// constant time and the timestamp's freshness.
func VerifyURL(token, signature, timestamp, nonce string, now time.Time) error {
	if !equalHex(sha1Sorted(token, timestamp, nonce), signature) {
		return ErrCallbackSignature
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil {
		return ErrCallbackSignature
	}
	if d := now.Sub(time.Unix(ts, 0)); d > CallbackTolerance || d < -CallbackTolerance {
		return ErrCallbackStale
	}
	return nil
}

// AESKey decodes an EncodingAESKey (43 characters) into the 32-byte key.
func AESKey(encodingAESKey string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(encodingAESKey + "=")
	if err != nil || len(k) != 32 {
		return nil, errors.New("EncodingAESKey must be 43 characters of base64 (32 bytes)")
	}
	return k, nil
}

// encryptedEnvelope is the body WeChat posts in safe mode.
type encryptedEnvelope struct {
	ToUserName string `xml:"ToUserName"`
	Encrypt    string `xml:"Encrypt"`
}

// OpenSafe verifies msg_signature over the Encrypt element and decrypts it:
// AES-256-CBC, IV = key[:16], PKCS#7 with block 32, plaintext laid out as
// random(16) | length(4, big-endian) | message | appid.
func OpenSafe(token string, key []byte, appID, msgSignature, timestamp, nonce string, body []byte) ([]byte, error) {
	var env encryptedEnvelope
	if err := xml.Unmarshal(body, &env); err != nil || env.Encrypt == "" {
		return nil, ErrCallbackPlaintext
	}
	if !equalHex(sha1Sorted(token, timestamp, nonce, env.Encrypt), msgSignature) {
		return nil, ErrCallbackSignature
	}
	ct, err := base64.StdEncoding.DecodeString(env.Encrypt)
	if err != nil || len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, ErrCallbackDecrypt
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, ErrCallbackDecrypt
	}
	plain := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, key[:16]).CryptBlocks(plain, ct)
	pad := int(plain[len(plain)-1])
	if pad < 1 || pad > 32 || pad > len(plain) {
		return nil, ErrCallbackDecrypt
	}
	plain = plain[:len(plain)-pad]
	if len(plain) < 20 {
		return nil, ErrCallbackDecrypt
	}
	n := int(binary.BigEndian.Uint32(plain[16:20]))
	if n < 0 || 20+n > len(plain) {
		return nil, ErrCallbackDecrypt
	}
	if subtle.ConstantTimeCompare(plain[20+n:], []byte(appID)) != 1 {
		return nil, ErrCallbackAppID
	}
	return plain[20 : 20+n], nil
}

// SealReply encrypts a passive reply for safe mode and wraps it with its
// signature, as WeChat expects it back.
func SealReply(token string, key []byte, appID string, reply []byte, now time.Time) ([]byte, error) {
	random := make([]byte, 16)
	_, _ = rand.Read(random)
	var buf bytes.Buffer
	buf.Write(random)
	_ = binary.Write(&buf, binary.BigEndian, uint32(len(reply)))
	buf.Write(reply)
	buf.WriteString(appID)
	pad := 32 - buf.Len()%32
	buf.Write(bytes.Repeat([]byte{byte(pad)}, pad))
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	ct := make([]byte, buf.Len())
	cipher.NewCBCEncrypter(block, key[:16]).CryptBlocks(ct, buf.Bytes())
	enc := base64.StdEncoding.EncodeToString(ct)
	ts := strconv.FormatInt(now.Unix(), 10)
	nonce := strconv.FormatInt(now.UnixNano()%1e9, 10)
	type out struct {
		XMLName      xml.Name `xml:"xml"`
		Encrypt      cdata    `xml:"Encrypt"`
		MsgSignature cdata    `xml:"MsgSignature"`
		TimeStamp    string   `xml:"TimeStamp"`
		Nonce        cdata    `xml:"Nonce"`
	}
	return xml.Marshal(out{Encrypt: cdata{enc}, MsgSignature: cdata{sha1Sorted(token, ts, nonce, enc)}, TimeStamp: ts, Nonce: cdata{nonce}})
}

type cdata struct {
	Value string `xml:",cdata"`
}

// Message is an official-account message or event as WeChat posts it.
type Message struct {
	ToUserName   string `xml:"ToUserName"`
	FromUserName string `xml:"FromUserName"`
	CreateTime   int64  `xml:"CreateTime"`
	MsgType      string `xml:"MsgType"`
	Content      string `xml:"Content"`
	MsgID        int64  `xml:"MsgId"`
	MsgIDEvent   int64  `xml:"MsgID"` // TEMPLATESENDJOBFINISH spells it this way
	Event        string `xml:"Event"`
	EventKey     string `xml:"EventKey"`
	Status       string `xml:"Status"`
	PicURL       string `xml:"PicUrl"`
	MediaID      string `xml:"MediaId"`
	// PublishEventInfo comes with PUBLISHJOBFINISH.
	PublishEventInfo *PublishEventInfo `xml:"PublishEventInfo"`
	// The counts of MASSSENDJOBFINISH (its id is MsgIDEvent).
	TotalCount  int `xml:"TotalCount"`
	FilterCount int `xml:"FilterCount"`
	SentCount   int `xml:"SentCount"`
	ErrorCount  int `xml:"ErrorCount"`
}

// PublishEventInfo is the result of a publish task (PUBLISHJOBFINISH).
type PublishEventInfo struct {
	PublishID     string `xml:"publish_id"`
	PublishStatus int    `xml:"publish_status"`
	ArticleID     string `xml:"article_id"`
	ArticleDetail struct {
		Item []struct {
			Idx        int    `xml:"idx"`
			ArticleURL string `xml:"article_url"`
		} `xml:"item"`
	} `xml:"article_detail"`
	FailIdx []int `xml:"fail_idx"`
}

// Result is the event as freepublish/get would answer it.
func (p *PublishEventInfo) Result() PublishResult {
	r := PublishResult{PublishID: p.PublishID, Status: p.PublishStatus, ArticleID: p.ArticleID, FailIdx: p.FailIdx}
	for _, it := range p.ArticleDetail.Item {
		r.URLs = append(r.URLs, it.ArticleURL)
	}
	return r
}

// ParseMessage decodes a message, refusing anything that is not one.
func ParseMessage(body []byte) (*Message, error) {
	var m Message
	if err := xml.Unmarshal(body, &m); err != nil || m.FromUserName == "" || m.MsgType == "" || len(m.FromUserName) > 64 {
		return nil, ErrCallbackXML
	}
	return &m, nil
}

// DedupeKey identifies a message across WeChat's retries: MsgId for
// messages, FromUserName + CreateTime for events.
func (m *Message) DedupeKey() string {
	if m.MsgID != 0 {
		return "msg:" + strconv.FormatInt(m.MsgID, 10)
	}
	key := "evt:" + m.FromUserName + ":" + strconv.FormatInt(m.CreateTime, 10) + ":" + m.Event
	// Two jobs may finish within one second: their ids tell them apart.
	switch {
	case m.PublishEventInfo != nil:
		key += ":" + m.PublishEventInfo.PublishID
	case m.MsgIDEvent != 0:
		key += ":" + strconv.FormatInt(m.MsgIDEvent, 10)
	}
	return key
}

// TextReply renders a passive text reply.
func TextReply(to, from, content string, now time.Time) []byte {
	type reply struct {
		XMLName      xml.Name `xml:"xml"`
		ToUserName   cdata    `xml:"ToUserName"`
		FromUserName cdata    `xml:"FromUserName"`
		CreateTime   int64    `xml:"CreateTime"`
		MsgType      cdata    `xml:"MsgType"`
		Content      cdata    `xml:"Content"`
	}
	b, _ := xml.Marshal(reply{ToUserName: cdata{to}, FromUserName: cdata{from}, CreateTime: now.Unix(), MsgType: cdata{"text"}, Content: cdata{content}})
	return b
}
