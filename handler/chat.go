package handler

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// chatHandlers serve the doctor chat: patients in the mini-program, doctors
// (and admins) in the inbox, with live events over SSE.
type chatHandlers struct {
	chat     *service.Chat
	patients *service.PatientAdmin
	p360     func(v *service.Patient360, role string) Patient360DTO
	// heartbeat is how often an idle stream sends a comment line, so that
	// proxies keep it open.
	heartbeat time.Duration
}

func (h chatHandlers) registerMP(rg *gin.RouterGroup) {
	rg.GET("/doctors", h.doctors)
	rg.POST("/conversations", h.start)
	rg.GET("/conversations", h.mine)
	rg.GET("/conversations/:id/messages", h.patientMessages)
	rg.POST("/conversations/:id/messages", h.send)
	rg.POST("/conversations/:id/close", h.patientClose)
	rg.GET("/chat/images/:name", h.image)
}

func (h chatHandlers) registerAdmin(rg *gin.RouterGroup) {
	doc := allow(service.ActChatAnswer)
	rg.GET("/conversations", doc, h.inbox)
	rg.GET("/conversations/counts", doc, h.counts)
	rg.GET("/conversations/stream", doc, h.stream)
	rg.GET("/conversations/:id", doc, h.get)
	rg.GET("/conversations/:id/messages", doc, h.staffMessages)
	rg.POST("/conversations/:id/messages", doc, h.reply)
	rg.POST("/conversations/:id/claim", doc, h.claim)
	rg.POST("/conversations/:id/transfer", doc, h.transfer)
	rg.POST("/conversations/:id/close", doc, h.staffClose)
	rg.GET("/chat/images/:name", doc, h.image)
	rg.GET("/chat/doctors", doc, h.doctors)
	rg.PUT("/chat/duty", doc, h.setDuty(true))
	rg.PUT("/chat/duty/:id", allow(service.ActChatDutyOthers), h.setDuty(false))
	rg.GET("/chat/settings", doc, h.settings)
	rg.PUT("/chat/settings", allow(service.ActChatSettings), h.saveSettings)
	rg.GET("/chat/canned-replies", doc, h.canned)
	rg.POST("/chat/canned-replies", doc, h.saveCanned)
	rg.DELETE("/chat/canned-replies/:id", doc, h.deleteCanned)
}

// ConversationDTO is a conversation in a list or beside the chat.
type ConversationDTO struct {
	ID            uint64  `json:"id"`
	PatientID     uint64  `json:"patient_id"`
	PatientName   string  `json:"patient_name,omitempty"` // staff only
	Topic         string  `json:"topic"`
	Department    string  `json:"department"`
	DoctorID      *uint64 `json:"doctor_id"`
	DoctorName    string  `json:"doctor_name"`
	Status        string  `json:"status"`
	Channel       string  `json:"channel"`
	Unread        int     `json:"unread"`
	LastMessage   string  `json:"last_message"`
	LastMessageAt string  `json:"last_message_at"`
	AwaitingSince string  `json:"awaiting_since,omitempty"`
	Escalated     bool    `json:"escalated"`
	CreatedAt     string  `json:"created_at"`
	ClosedAt      string  `json:"closed_at,omitempty"`
}

// conversations renders conversations for staff or for their patient, with
// the doctors' (and, for staff, the patients') names.
func (h chatHandlers) conversations(c *gin.Context, cs []model.Conversation, staff bool) []ConversationDTO {
	doctors, patients := h.chat.Names(c.Request.Context(), cs)
	out := make([]ConversationDTO, 0, len(cs))
	for i := range cs {
		cv := &cs[i]
		d := ConversationDTO{ID: cv.ID, PatientID: cv.PatientID, Topic: cv.Topic, Department: cv.Department, DoctorID: cv.DoctorID,
			Status: cv.Status, Channel: cv.Channel, Unread: cv.PatientUnread, LastMessage: cv.LastMessage,
			LastMessageAt: model.LocalTime(cv.LastMessageAt), Escalated: cv.EscalatedAt != nil, CreatedAt: model.LocalTime(cv.CreatedAt)}
		if cv.DoctorID != nil {
			d.DoctorName = doctors[*cv.DoctorID]
		}
		if staff {
			d.Unread, d.PatientName = cv.StaffUnread, patients[cv.PatientID]
		}
		if cv.AwaitingSince != nil {
			d.AwaitingSince = model.LocalTime(*cv.AwaitingSince)
		}
		if cv.ClosedAt != nil {
			d.ClosedAt = model.LocalTime(*cv.ClosedAt)
		}
		out = append(out, d)
	}
	return out
}

func (h chatHandlers) conversation(c *gin.Context, cv *model.Conversation, staff bool) ConversationDTO {
	return h.conversations(c, []model.Conversation{*cv}, staff)[0]
}

// answerConversation renders the outcome of an action on a conversation.
func (h chatHandlers) answerConversation(c *gin.Context, cv *model.Conversation, err error, staff bool) {
	renderOne(c, http.StatusOK, cv, err, func(cv *model.Conversation) ConversationDTO { return h.conversation(c, cv, staff) })
}

func (h chatHandlers) doctors(c *gin.Context) {
	ds, err := h.chat.Doctors(c.Request.Context())
	if err != nil {
		fail(c, err)
		return
	}
	if ds == nil {
		ds = []service.Doctor{}
	}
	c.JSON(http.StatusOK, gin.H{"items": ds})
}

type startRequest struct {
	Topic      string `json:"topic"`
	Department string `json:"department"`
	DoctorID   uint64 `json:"doctor_id"`
}

func (h chatHandlers) start(c *gin.Context) {
	var req startRequest
	if c.Request.ContentLength != 0 && !bindJSON(c, &req) {
		return
	}
	cv, created, err := h.chat.Start(c.Request.Context(), principal(c), service.StartRequest{Topic: req.Topic, Department: req.Department, DoctorID: req.DoctorID})
	if err != nil {
		fail(c, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	c.JSON(status, h.conversation(c, cv, false))
}

func (h chatHandlers) mine(c *gin.Context) {
	cs, err := h.chat.Mine(c.Request.Context(), principal(c))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"items": h.conversations(c, cs, false), "next_cursor": ""})
}

// afterParam reads ?after= (a message id; 0 for the start).
func afterParam(c *gin.Context) (uint64, bool) {
	s := c.Query("after")
	if s == "" {
		return 0, true
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		fail(c, model.ErrInvalid.WithMessage("after 须为消息编号"))
		return 0, false
	}
	return n, true
}

func (h chatHandlers) patientMessages(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	after, ok := afterParam(c)
	if !ok {
		return
	}
	// ?wait=N holds the request up to N seconds (at most 30) until a new
	// message arrives: the mini-program's long poll.
	wait, _ := strconv.Atoi(c.Query("wait"))
	wait = min(max(wait, 0), 30)
	cv, msgs, err := h.chat.Wait(c.Request.Context(), principal(c), id, after, time.Duration(wait)*time.Second)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"conversation": h.conversation(c, cv, false), "items": msgs})
}

type sendRequest struct {
	Kind      string `json:"kind"`
	Content   string `json:"content"`
	ClientKey string `json:"client_key"`
}

func (h chatHandlers) send(c *gin.Context) {
	id, req, ok := idAndJSON[sendRequest](c)
	if !ok {
		return
	}
	msg, auto, err := h.chat.Send(c.Request.Context(), principal(c), id, service.PatientMessage{Kind: req.Kind, Content: req.Content, ClientKey: req.ClientKey})
	if err != nil {
		fail(c, err)
		return
	}
	out := gin.H{"message": msg}
	if auto != nil {
		out["auto_reply"] = auto
	}
	c.JSON(http.StatusCreated, out)
}

// upload takes an image (the raw body, or the "image" field of a
// multipart form, as wx.uploadFile sends it) and returns the content to send
// it with.
func (h chatHandlers) upload(c *gin.Context) {
	var r io.Reader = c.Request.Body
	if strings.HasPrefix(c.ContentType(), "multipart/") {
		f, _, err := c.Request.FormFile("image")
		if err != nil {
			fail(c, service.ErrBadImage)
			return
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, service.MaxChatImage+1))
	if err != nil {
		fail(c, service.ErrBadImage)
		return
	}
	ref, err := h.chat.SaveImage(c.Request.Context(), principal(c), data)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, gin.H{"kind": "image", "content": ref})
}

func (h chatHandlers) image(c *gin.Context) {
	rc, err := h.chat.Image(c.Request.Context(), principal(c), c.Param("name"))
	if err != nil {
		fail(c, err)
		return
	}
	defer rc.Close()
	ct := "image/jpeg"
	if strings.HasSuffix(c.Param("name"), ".png") {
		ct = "image/png"
	}
	c.Header("Cache-Control", "private, max-age=86400")
	c.DataFromReader(http.StatusOK, -1, ct, rc, nil)
}

func (h chatHandlers) patientClose(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	cv, err := h.chat.Close(c.Request.Context(), principal(c), id, false)
	h.answerConversation(c, cv, err, false)
}

func (h chatHandlers) inbox(c *gin.Context) {
	limit, ok := queryLimit(c)
	if !ok {
		return
	}
	cs, next, err := h.chat.Inbox(c.Request.Context(), principal(c), service.InboxQuery{Scope: c.Query("scope"), Status: c.Query("status"),
		Escalated: c.Query("escalated") == "true", Cursor: c.Query("cursor"), Limit: limit})
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"items": h.conversations(c, cs, true), "next_cursor": next})
}

func (h chatHandlers) counts(c *gin.Context) {
	n, err := h.chat.Counts(c.Request.Context(), principal(c))
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, n)
}

// stream pushes chat events to a staff client as server-sent events until
// it disconnects: "event: chat" with the event as data, "event: resync"
// when the client fell behind and should reload the inbox.
func (h chatHandlers) stream(c *gin.Context) {
	client, done, err := h.chat.Watch(c.Request.Context(), principal(c))
	if err != nil {
		fail(c, err)
		return
	}
	defer done()
	// The stream outlives the server's write timeout.
	rc := http.NewResponseController(c.Writer)
	_ = rc.SetWriteDeadline(time.Time{})
	c.Header("Content-Type", "text/event-stream")
	c.Header("Cache-Control", "no-cache")
	c.Header("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)
	if _, err := io.WriteString(c.Writer, ": connected\n\n"); err != nil {
		return
	}
	c.Writer.Flush()
	beat := time.NewTicker(h.heartbeat)
	defer beat.Stop()
	for {
		var err error
		select {
		case <-c.Request.Context().Done():
			return
		case <-h.chat.Live().Closing():
			return
		case ev := <-client.C:
			if client.Lagged.Swap(false) {
				_, err = io.WriteString(c.Writer, "event: resync\ndata: {}\n\n")
			}
			if err == nil { // three writes into the buffer: no copy of the event per stream
				_, err = io.WriteString(c.Writer, "event: chat\ndata: ")
				if err == nil {
					_, err = c.Writer.Write(ev)
				}
				if err == nil {
					_, err = io.WriteString(c.Writer, "\n\n")
				}
			}
		case <-client.Ended:
			// A stream outlives its request: a revoked session or a
			// disabled account ends it (checked for all streams at once).
			_, _ = io.WriteString(c.Writer, "event: unauthorized\ndata: {}\n\n")
			return
		case <-beat.C:
			if client.Lagged.Swap(false) {
				_, err = io.WriteString(c.Writer, "event: resync\ndata: {}\n\n")
			} else {
				_, err = io.WriteString(c.Writer, ": keep-alive\n\n")
			}
		}
		if err != nil {
			return
		}
		c.Writer.Flush()
	}
}

// ConversationDetailDTO is a conversation with the patient's 360 beside it.
type ConversationDetailDTO struct {
	Conversation ConversationDTO `json:"conversation"`
	Patient      Patient360DTO   `json:"patient"`
}

func (h chatHandlers) get(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	cv, err := h.chat.Get(c.Request.Context(), principal(c), id)
	if err != nil {
		fail(c, err)
		return
	}
	v, err := h.patients.View(c.Request.Context(), principal(c), cv.PatientID)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, ConversationDetailDTO{Conversation: h.conversation(c, cv, true), Patient: h.p360(v, principal(c).Role)})
}

func (h chatHandlers) staffMessages(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	after, ok := afterParam(c)
	if !ok {
		return
	}
	cv, msgs, err := h.chat.Messages(c.Request.Context(), principal(c), id, after, 0)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"conversation": h.conversation(c, cv, true), "items": msgs})
}

type replyRequest struct {
	Content string `json:"content" binding:"required"`
}

func (h chatHandlers) reply(c *gin.Context) {
	id, req, ok := idAndJSON[replyRequest](c)
	if !ok {
		return
	}
	msg, err := h.chat.Reply(c.Request.Context(), principal(c), id, req.Content)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, msg)
}

func (h chatHandlers) claim(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	cv, err := h.chat.Claim(c.Request.Context(), principal(c), id)
	h.answerConversation(c, cv, err, true)
}

type transferRequest struct {
	DoctorID   uint64 `json:"doctor_id"`
	Department string `json:"department"`
	Note       string `json:"note"`
}

func (h chatHandlers) transfer(c *gin.Context) {
	id, req, ok := idAndJSON[transferRequest](c)
	if !ok {
		return
	}
	cv, err := h.chat.Transfer(c.Request.Context(), principal(c), id, service.TransferRequest{DoctorID: req.DoctorID, Department: req.Department, Note: req.Note})
	h.answerConversation(c, cv, err, true)
}

type closeRequest struct {
	Survey bool `json:"survey"`
}

func (h chatHandlers) staffClose(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	var req closeRequest
	if c.Request.ContentLength != 0 && !bindJSON(c, &req) {
		return
	}
	cv, err := h.chat.Close(c.Request.Context(), principal(c), id, req.Survey)
	h.answerConversation(c, cv, err, true)
}

type dutyRequest struct {
	OnDuty     bool   `json:"on_duty"`
	Department string `json:"department"`
}

// setDuty sets a doctor's duty: the caller's own (self) or, for admins,
// the doctor in the path.
func (h chatHandlers) setDuty(self bool) gin.HandlerFunc {
	return func(c *gin.Context) {
		id := principal(c).ID
		if !self {
			var ok bool
			if id, ok = idParam(c); !ok {
				return
			}
		}
		var req dutyRequest
		if !bindJSON(c, &req) {
			return
		}
		if err := h.chat.SetDuty(c.Request.Context(), principal(c), id, strings.TrimSpace(req.Department), req.OnDuty); err != nil {
			fail(c, err)
			return
		}
		ds, err := h.chat.Doctors(c.Request.Context())
		if err != nil {
			fail(c, err)
			return
		}
		for _, d := range ds {
			if d.ID == id {
				c.JSON(http.StatusOK, d)
				return
			}
		}
		fail(c, model.ErrNotFound.WithMessage("该员工不是医生"))
	}
}

func (h chatHandlers) settings(c *gin.Context) {
	c.JSON(http.StatusOK, h.chat.Settings(c.Request.Context()))
}

func (h chatHandlers) saveSettings(c *gin.Context) {
	var req service.ChatSettings
	if !bindJSON(c, &req) {
		return
	}
	if err := h.chat.SaveSettings(c.Request.Context(), principal(c), req); err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, req)
}

// CannedReplyDTO is a prepared answer.
type CannedReplyDTO struct {
	ID      uint64 `json:"id"`
	Title   string `json:"title"`
	Content string `json:"content"`
	Shared  bool   `json:"shared"`
}

func cannedDTO(r *model.CannedReply) CannedReplyDTO {
	return CannedReplyDTO{ID: r.ID, Title: r.Title, Content: r.Content, Shared: r.StaffID == 0}
}

func (h chatHandlers) canned(c *gin.Context) {
	rs, err := h.chat.CannedReplies(c.Request.Context(), principal(c))
	renderList(c, rs, err, cannedDTO)
}

type cannedRequest struct {
	Title   string `json:"title" binding:"required"`
	Content string `json:"content" binding:"required"`
	Shared  bool   `json:"shared"`
}

func (h chatHandlers) saveCanned(c *gin.Context) {
	var req cannedRequest
	if !bindJSON(c, &req) {
		return
	}
	r, err := h.chat.SaveCannedReply(c.Request.Context(), principal(c), req.Title, req.Content, req.Shared)
	renderOne(c, http.StatusCreated, r, err, cannedDTO)
}

func (h chatHandlers) deleteCanned(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	noContent(c, h.chat.DeleteCannedReply(c.Request.Context(), principal(c), id))
}
