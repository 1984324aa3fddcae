package wxconfig

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"

	"github.com/silenceper/wechat/v2/util"

	"careloop/model"
)

// WeChat error codes careloop acts on.
const (
	CodeBusy              = -1
	CodeInvalidCredential = 40001
	CodeInvalidOpenID     = 40003
	CodeInvalidToken      = 40014
	CodeInvalidTemplate   = 40037
	CodeTokenExpired      = 42001
	CodeRequireSubscribe  = 43004
	CodeSubscribeRefused  = 43101
	CodeDailyQuota        = 45009
	CodeMinuteQuota       = 45011
	CodeWindowClosed      = 45015
	CodeWindowCountUsed   = 45047
	CodeArgumentInvalid   = 47003
	CodeInvalidPage       = 41030
	CodeInvalidCode       = 40029
	CodeCodeUsed          = 40163
	CodeRiskyUser         = 40226
)

// Outcome names what a WeChat failure means for whoever called: callers
// switch on these names, never on errcodes, which are mapped here once.
type Outcome string

// The outcomes.
const (
	// OutcomeNone: no WeChat error at all.
	OutcomeNone Outcome = ""
	// OutcomeRetry: WeChat was busy (-1), answered 5xx, or could not be
	// reached; the same request may succeed later.
	OutcomeRetry Outcome = "retry"
	// OutcomeRefreshToken: the access token was refused (40001, 40014,
	// 42001); a fresh token should be fetched and the call made again.
	OutcomeRefreshToken Outcome = "refreshToken"
	// OutcomeUnknown: the request may have reached WeChat and its answer
	// was lost (a timeout after sending); resend only where a duplicate is
	// harmless.
	OutcomeUnknown Outcome = "unknown"
	// OutcomeNoCredit: the user refused the subscribe message or has no
	// credit left for it (43101).
	OutcomeNoCredit Outcome = "noCredit"
	// OutcomeNotFollower: the user no longer follows the official account
	// (43004).
	OutcomeNotFollower Outcome = "notFollower"
	// OutcomeWindowClosed: the 48-hour customer-message window is closed or
	// its messages are used up (45015, 45047).
	OutcomeWindowClosed Outcome = "windowClosed"
	// OutcomeQuotaHeld: the API's daily quota is reached (45009).
	OutcomeQuotaHeld Outcome = "quotaHeld"
	// OutcomeMinuteLimit: the API's per-minute limit is reached (45011).
	OutcomeMinuteLimit Outcome = "minuteLimit"
	// OutcomeBadCode: a login or phone code is invalid, used, or its user
	// is held back by WeChat (40029, 40163, 40226).
	OutcomeBadCode Outcome = "badCode"
	// OutcomeBadRequest: anything else WeChat refused (40003, 40037, 47003,
	// 41030 …): a bug or a wrong configuration; retrying will not help.
	OutcomeBadRequest Outcome = "badRequest"
)

// codeOutcomes maps the errcodes with a meaning of their own.
var codeOutcomes = map[int]Outcome{
	CodeBusy:              OutcomeRetry,
	CodeInvalidCredential: OutcomeRefreshToken,
	CodeInvalidToken:      OutcomeRefreshToken,
	CodeTokenExpired:      OutcomeRefreshToken,
	CodeSubscribeRefused:  OutcomeNoCredit,
	CodeRequireSubscribe:  OutcomeNotFollower,
	CodeWindowClosed:      OutcomeWindowClosed,
	CodeWindowCountUsed:   OutcomeWindowClosed,
	CodeDailyQuota:        OutcomeQuotaHeld,
	CodeMinuteQuota:       OutcomeMinuteLimit,
	CodeInvalidCode:       OutcomeBadCode,
	CodeCodeUsed:          OutcomeBadCode,
	CodeRiskyUser:         OutcomeBadCode,
}

// Outcome says what the failure means (see Outcome).
func (e *Error) Outcome() Outcome {
	switch {
	case e.Unknown:
		return OutcomeUnknown
	case e.Code != 0:
		if o, ok := codeOutcomes[e.Code]; ok {
			return o
		}
		return OutcomeBadRequest
	case e.HTTPStatus >= 500 || e.Transport:
		return OutcomeRetry
	}
	return OutcomeBadRequest
}

// OutcomeOf returns the outcome of the WeChat error in err's chain:
// OutcomeNone when there is none.
func OutcomeOf(err error) Outcome {
	var e *Error
	if errors.As(err, &e) {
		return e.Outcome()
	}
	return OutcomeNone
}

// Error is every failure of a WeChat call, whatever shape the SDK gave it:
// WeChat's numeric errcode where there was one, the HTTP status where the
// answer was not 200, or a transport failure. Its text never carries the
// URL (which holds the access token or the app secret).
type Error struct {
	Op         string // what we were doing, e.g. "subscribe send"
	Code       int    // WeChat errcode; 0 when WeChat gave none
	Msg        string // WeChat's errmsg, or a scrubbed description
	HTTPStatus int    // non-200 status, when that was the failure
	// Unknown means the request may have reached WeChat and its outcome is
	// not known (a timeout after sending): resend only where a duplicate is
	// harmless.
	Unknown bool
	// Transport means the request failed before WeChat answered.
	Transport bool
}

func (e *Error) Error() string {
	switch {
	case e.Code != 0:
		return fmt.Sprintf("wechat %s: errcode=%d errmsg=%s", e.Op, e.Code, e.Msg)
	case e.HTTPStatus != 0:
		return fmt.Sprintf("wechat %s: http status %d", e.Op, e.HTTPStatus)
	default:
		return fmt.Sprintf("wechat %s: %s", e.Op, e.Msg)
	}
}

// CodeOf returns the WeChat errcode in err's chain, or 0.
func CodeOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

var (
	errcodeRe = regexp.MustCompile(`errcode\s*[=:]\s*(-?\d+)`)
	errmsgRe  = regexp.MustCompile(`(?:errmsg|errormsg)\s*[=:]\s*([^,]*)`)
	statusRe  = regexp.MustCompile(`statusCode=(\d+)`)
)

// Classify turns any error from the SDK or our HTTP client into *Error.
func Classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var we *Error
	if errors.As(err, &we) {
		return we
	}
	e := &Error{Op: op}
	var ce *util.CommonError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		e.Code, e.Msg = int(ce.ErrCode), ce.ErrMsg
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		e.Unknown, e.Transport, e.Msg = true, true, "timeout"
	case errors.Is(err, context.Canceled):
		e.Unknown, e.Msg = true, "canceled"
	default:
		s := err.Error()
		if m := errcodeRe.FindStringSubmatch(s); m != nil {
			e.Code, _ = strconv.Atoi(m[1])
			if mm := errmsgRe.FindStringSubmatch(s); mm != nil {
				e.Msg = mm[1]
			}
		} else if m := statusRe.FindStringSubmatch(s); m != nil {
			e.HTTPStatus, _ = strconv.Atoi(m[1])
			e.Msg = "http status " + m[1]
		} else {
			var opErr *net.OpError
			if errors.As(err, &opErr) {
				e.Transport, e.Msg = true, "network: "+opErr.Op
			} else {
				// Unparsed SDK text (JSON decode and the like): keep it
				// short and without URLs.
				e.Transport, e.Msg = true, scrub(s)
			}
		}
	}
	return e
}

var urlRe = regexp.MustCompile(`https?://\S+`)

func scrub(s string) string {
	return model.Truncate(urlRe.ReplaceAllString(s, "<url>"), 200)
}

// codeMeanings say in Chinese, for staff, what WeChat's errcodes mean.
var codeMeanings = map[int]string{
	CodeBusy:              "微信系统繁忙",
	CodeInvalidCredential: "access_token 无效",
	CodeInvalidOpenID:     "openid 无效",
	CodeInvalidToken:      "access_token 不合法",
	CodeInvalidTemplate:   "模板 ID 无效",
	CodeTokenExpired:      "access_token 已过期",
	CodeRequireSubscribe:  "用户未关注公众号",
	CodeSubscribeRefused:  "用户拒绝接收或未订阅此消息",
	CodeDailyQuota:        "接口调用超过每日限额",
	CodeMinuteQuota:       "接口调用超过每分钟限额",
	CodeWindowClosed:      "已超出 48 小时客服消息时限",
	CodeWindowCountUsed:   "客服消息条数已用完",
	CodeArgumentInvalid:   "参数不符合模板要求",
	CodeInvalidPage:       "跳转页面无效",
	CodeInvalidCode:       "code 无效",
	CodeCodeUsed:          "code 已被使用",
}

// Chinese says what went wrong for staff, keeping WeChat's errcode:
// "微信返回 45009（接口调用超过每日限额）".
func (e *Error) Chinese() string {
	switch {
	case e.Code != 0:
		if m, ok := codeMeanings[e.Code]; ok {
			return fmt.Sprintf("微信返回 %d（%s）", e.Code, m)
		}
		return fmt.Sprintf("微信返回 %d（%s）", e.Code, e.Msg)
	case e.HTTPStatus != 0:
		return fmt.Sprintf("微信接口 HTTP %d", e.HTTPStatus)
	case e.Unknown:
		return "请求微信超时，结果未知"
	default:
		return "无法连接微信"
	}
}
