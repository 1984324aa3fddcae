package wxsandbox

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Mass sends as WeChat does them: to every follower or a tag's
// (mass/sendall), or to 2–10,000 openids (mass/send); clientmsgid
// de-duplicated for 24 hours (45065 answers the first msg_id); 60 requests
// a minute; a follower receives at most 4 mass messages a calendar month
// (the rest are filtered and counted); the job ends asynchronously with
// MASSSENDJOBFINISH, its state readable with mass/get.

// Mass-send error codes.
const (
	CodeMassSentAlready = 45065
	CodeTooFewUsers     = 40130
	CodeInvalidTag      = 40050
)

func init() {
	codeMessages[CodeMassSentAlready] = "clientmsgid exist"
	codeMessages[CodeTooFewUsers] = "invalid openid list size, at least two openid"
	codeMessages[CodeInvalidTag] = "invalid tag id"
}

// Mass endpoint names.
const (
	APIMassSend    = "mass_send"
	APIMassPreview = "mass_preview"
	APIMassGet     = "mass_get"
	massPerMinute  = 60
	massMonthly    = 4
	massDedupeTTL  = 24 * time.Hour
)

type massJob struct {
	status                        string // SENDING, SEND_SUCCESS
	total, filtered, sent, errors int
}

type massRequest struct {
	Filter *struct {
		IsToAll bool `json:"is_to_all"`
		TagID   int  `json:"tag_id"`
	} `json:"filter"`
	ToUser      []string `json:"touser"`
	MsgType     string   `json:"msgtype"`
	ClientMsgID string   `json:"clientmsgid"`
	MPNews      *struct {
		MediaID string `json:"media_id"`
	} `json:"mpnews"`
	Text *struct {
		Content string `json:"content"`
	} `json:"text"`
}

// MassReceived is how many mass messages openID received this month.
func (s *Sandbox) MassReceived(openID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.massMonth[openID+"|"+s.now().Format("2006-01")]
}

func (s *Sandbox) handleMassSendAll(w http.ResponseWriter, r *http.Request, appID string) {
	s.handleMass(w, r, appID, APIMassSendAll)
}

func (s *Sandbox) handleMassSend(w http.ResponseWriter, r *http.Request, appID string) {
	s.handleMass(w, r, appID, APIMassSend)
}

func (s *Sandbox) handleMass(w http.ResponseWriter, r *http.Request, appID, api string) {
	payload, _ := peekBody(r)
	var req massRequest
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	rec := Sent{API: api, AppID: appID, Payload: payload}
	refuse := func(code int, extra map[string]any) {
		rec.ErrCode, rec.ErrMsg = code, codeMessages[code]
		s.appendSentLocked(rec)
		body := errBody(code, "")
		for k, v := range extra {
			body[k] = v
		}
		writeJSON(w, http.StatusOK, body)
	}
	// Recipients.
	var to []string
	switch {
	case api == APIMassSendAll && req.Filter == nil:
		refuse(CodeArgumentInvalid, nil)
		return
	case api == APIMassSendAll && req.Filter.IsToAll:
		rec.ToUser = "all"
		for k, f := range s.follows {
			if f && len(k) > len(appID) && k[:len(appID)+1] == appID+"|" {
				to = append(to, k[len(appID)+1:])
			}
		}
	case api == APIMassSendAll:
		if _, ok := s.tags[req.Filter.TagID]; !ok {
			refuse(CodeInvalidTag, nil)
			return
		}
		rec.ToUser = "tag:" + strconv.Itoa(req.Filter.TagID)
		for o := range s.tagged[req.Filter.TagID] {
			to = append(to, o)
		}
	default:
		if len(req.ToUser) < 2 || len(req.ToUser) > 10000 {
			refuse(CodeTooFewUsers, nil)
			return
		}
		rec.ToUser = strconv.Itoa(len(req.ToUser)) + " users"
		to = req.ToUser
	}
	switch {
	case req.MsgType == "mpnews" && (req.MPNews == nil || s.drafts[req.MPNews.MediaID] == nil):
		refuse(CodeInvalidMediaID, nil)
		return
	case req.MsgType == "text" && (req.Text == nil || req.Text.Content == ""):
		refuse(CodeArgumentInvalid, nil)
		return
	case req.MsgType != "mpnews" && req.MsgType != "text":
		refuse(CodeArgumentInvalid, nil)
		return
	case len(req.ClientMsgID) > 64:
		refuse(CodeArgumentInvalid, nil)
		return
	}
	if req.ClientMsgID != "" {
		if ref, ok := s.dedupe["mass|"+appID+"|"+req.ClientMsgID]; ok && now.Sub(ref.at) < massDedupeTTL {
			refuse(CodeMassSentAlready, map[string]any{"msg_id": ref.msgID})
			return
		}
	}
	minute := now.Truncate(time.Minute).Format(time.RFC3339)
	s.massRate[minute]++
	if s.massRate[minute] > massPerMinute {
		refuse(CodeMinuteQuota, nil)
		return
	}
	s.massSeq++
	msgID := 1000000000 + s.massSeq
	if req.ClientMsgID != "" {
		s.dedupe["mass|"+appID+"|"+req.ClientMsgID] = sentRef{msgID: msgID, at: now}
	}
	// The job: WeChat delivers to followers under the monthly limit.
	job := &massJob{status: "SENDING", total: len(to)}
	mon := now.Format("2006-01")
	for _, o := range to {
		switch {
		case !s.follows[appID+"|"+o]:
			job.errors++
		case s.massMonth[o+"|"+mon] >= massMonthly:
			job.filtered++
		default:
			s.massMonth[o+"|"+mon]++
			job.sent++
		}
	}
	s.massJobs[msgID] = job
	rec.MsgID, rec.ErrMsg = msgID, "send job submission success"
	s.appendSentLocked(rec)
	s.jobs.Add(1)
	time.AfterFunc(s.eventDelay, func() {
		defer s.jobs.Done()
		s.mu.Lock()
		defer s.mu.Unlock()
		job.status = "SEND_SUCCESS"
		s.emitLocked("MASSSENDJOBFINISH", []byte(fmt.Sprintf("<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName><FromUserName><![CDATA[oSandboxAccount]]></FromUserName>"+
			"<CreateTime>%d</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[MASSSENDJOBFINISH]]></Event><MsgID>%d</MsgID>"+
			"<Status><![CDATA[send success]]></Status><TotalCount>%d</TotalCount><FilterCount>%d</FilterCount><SentCount>%d</SentCount><ErrorCount>%d</ErrorCount></xml>",
			s.now().Unix(), msgID, job.total, job.filtered, job.sent, job.errors)))
	})
	writeJSON(w, http.StatusOK, map[string]any{"errcode": 0, "errmsg": rec.ErrMsg, "msg_id": msgID, "msg_data_id": msgID + 7})
}

func (s *Sandbox) handleMassPreview(w http.ResponseWriter, r *http.Request, appID string) {
	payload, _ := peekBody(r)
	var req struct {
		ToUser   string `json:"touser"`
		ToWxName string `json:"towxname"`
		massRequest
	}
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rec := Sent{API: APIMassPreview, AppID: appID, Payload: payload, ToUser: req.ToUser}
	if req.ToUser == "" {
		rec.ToUser = "wx:" + req.ToWxName
	}
	code := 0
	switch {
	case req.ToUser == "" && req.ToWxName == "":
		code = CodeInvalidOpenID
	case req.ToUser != "" && !s.follows[appID+"|"+req.ToUser]:
		code = CodeRequireSubscribe
	case req.MsgType == "mpnews" && (req.MPNews == nil || s.drafts[req.MPNews.MediaID] == nil):
		code = CodeInvalidMediaID
	case req.MsgType != "mpnews" && req.MsgType != "text":
		code = CodeArgumentInvalid
	}
	if code != 0 {
		rec.ErrCode, rec.ErrMsg = code, codeMessages[code]
		s.appendSentLocked(rec)
		writeJSON(w, http.StatusOK, errBody(code, ""))
		return
	}
	s.massSeq++
	rec.MsgID, rec.ErrMsg = 1000000000+s.massSeq, "preview success"
	s.appendSentLocked(rec)
	writeJSON(w, http.StatusOK, map[string]any{"errcode": 0, "errmsg": "preview success", "msg_id": rec.MsgID})
}

func (s *Sandbox) handleMassGet(w http.ResponseWriter, r *http.Request, _ string) {
	var req struct {
		MsgID int64 `json:"msg_id"`
	}
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	job, ok := s.massJobs[req.MsgID]
	if !ok {
		writeJSON(w, http.StatusOK, errBody(CodeArgumentInvalid, "msg_id"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"msg_id": req.MsgID, "msg_status": job.status})
}
