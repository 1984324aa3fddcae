package app_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
	"careloop/service"
	"careloop/wxsandbox"
)

// duringWork puts the chat's clock on a Tuesday at 10:00 in Shanghai: doctors
// are at work (no automatic reply).
func duringWork(a *app.App) time.Time {
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, model.Shanghai)
	a.Chat.SetClock(func() time.Time { return at })
	return at
}

func staffID(t *testing.T, a *app.App, username string) uint64 {
	t.Helper()
	var st model.Staff
	if err := a.DB.Gorm().Where("username = ?", username).Take(&st).Error; err != nil {
		t.Fatal(err)
	}
	return st.ID
}

// newDoctor creates a doctor, puts them on duty in dept (when dept is not
// "-") and returns their token and id.
func newDoctor(t *testing.T, a *app.App, admin, username, dept string) (string, uint64) {
	t.Helper()
	tok := newStaff(t, a, admin, username, model.RoleDoctor)
	if dept != "-" {
		if r := call(t, a.Router, "PUT", "/api/admin/chat/duty", tok, map[string]any{"on_duty": true, "department": dept}); r.Status != 204 {
			t.Fatalf("duty: %d %s", r.Status, r.Raw)
		}
	}
	return tok, staffID(t, a, username)
}

// sse reads a staff client's live stream from a real HTTP server.
type sse struct {
	events chan string
	cancel func()
}

func openStream(t *testing.T, srv *httptest.Server, token string) *sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/admin/conversations/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		cancel()
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	s := &sse{events: make(chan string, 100), cancel: func() { cancel(); res.Body.Close() }}
	go func() {
		sc := bufio.NewScanner(res.Body)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "chat":
				s.events <- strings.TrimPrefix(line, "data: ")
			}
		}
		close(s.events)
	}()
	t.Cleanup(s.cancel)
	return s
}

// next returns the next event whose JSON contains want.
func (s *sse) next(t *testing.T, want string) string {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatalf("stream ended waiting for %s", want)
			}
			if strings.Contains(ev, want) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no live event with %s", want)
		}
	}
}

// sandboxSends returns the sandbox's recorded attempts of api to openID
// (leaving out those refused for an expired token, which are retried).
func sandboxSends(a *app.App, api, to string) []wxsandbox.Sent {
	var out []wxsandbox.Sent
	for _, s := range a.Sandbox.Sent() {
		if s.API == api && s.ToUser == to && s.ErrCode != 42001 && s.ErrCode != 40001 {
			out = append(out, s)
		}
	}
	return out
}

func deliverAll(t *testing.T, a *app.App) {
	t.Helper()
	for i := 0; i < 5; i++ {
		n, err := a.Dispatcher.ProcessDue(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

func lastNotification(t *testing.T, a *app.App, pid uint64) model.Notification {
	t.Helper()
	var n model.Notification
	if err := a.DB.Gorm().Where("patient_id = ? AND reason = ?", pid, "doctor_reply").Order("id DESC").Take(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}

// TestChatFromOfficialAccountEndToEnd: a follower's message on the
// official account reaches the doctor's live inbox; the doctor's reply goes
// back as a customer-service message inside WeChat's 48-hour window (at
// most 5 per user message) and as a notice outside it; the patient sees it
// in the mini-program too, at once through the long poll.
func TestChatFromOfficialAccountEndToEnd(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		duringWork(a)
		srv := httptest.NewServer(a.Router)
		t.Cleanup(srv.Close) // after the streams' own clean-up
		admin := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword)
		doc, docID := newDoctor(t, a, admin, "dr_li", "内科")
		mpTok, alice := login(t, a.Router, "dev:alice")
		oaID := wxsandbox.OAOpenID("alice")

		// Alice follows the official account: linked to her patient record
		// through the unionid (in the background).
		now := time.Now()
		a.Sandbox.SetFollower(a.Cfg.OAAppID, oaID, true, "")
		if r := postCallback(t, a, build(t, a, wxsandbox.EventMessage(oaID, "subscribe", "", now, ""), true, now)); r.Status != 200 {
			t.Fatalf("subscribe: %d %s", r.Status, r.Raw)
		}
		waitFor(t, func() bool {
			var f model.Follower
			return a.DB.Gorm().Where("open_id = ?", oaID).Take(&f).Error == nil && f.PatientID != nil && *f.PatientID == alice
		})

		live := openStream(t, srv, doc)
		send := func(text string, msgID int64) {
			t.Helper()
			r := postCallback(t, a, build(t, a, wxsandbox.TextMessage(oaID, text, msgID, time.Now()), true, time.Now()))
			if r.Status != 200 || string(r.Raw) != "success" {
				t.Fatalf("message: %d %s", r.Status, r.Raw)
			}
		}
		send("医生您好，我的体检报告血糖偏高，需要复查吗？", 9001)
		ev := live.next(t, "血糖偏高")
		if !strings.Contains(ev, fmt.Sprintf(`"patient_id":%d`, alice)) || !strings.Contains(ev, `"channel":"oa"`) {
			t.Fatalf("live event: %s", ev)
		}
		// WeChat's retry of the same message is not a second message.
		send("医生您好，我的体检报告血糖偏高，需要复查吗？", 9001)

		inbox := call(t, a.Router, "GET", "/api/admin/conversations?scope=mine", doc, nil)
		items, _ := inbox.Body["items"].([]any)
		if inbox.Status != 200 || len(items) != 1 {
			t.Fatalf("inbox: %d %s", inbox.Status, inbox.Raw)
		}
		cv := items[0].(map[string]any)
		if cv["unread"].(float64) != 1 || cv["channel"] != "oa" || cv["doctor_id"].(float64) != float64(docID) {
			t.Fatalf("conversation: %v", cv)
		}
		id := uint64(cv["id"].(float64))
		if c := call(t, a.Router, "GET", "/api/admin/conversations/counts", doc, nil); c.Body["mine_unread"].(float64) != 1 {
			t.Fatalf("counts: %s", c.Raw)
		}
		// Patient 360 beside the chat.
		if d := call(t, a.Router, "GET", fmt.Sprintf("/api/admin/conversations/%d", id), doc, nil); d.Status != 200 || d.Body["patient"].(map[string]any)["id"].(float64) != float64(alice) {
			t.Fatalf("detail: %d %s", d.Status, d.Raw)
		}
		msgs := call(t, a.Router, "GET", fmt.Sprintf("/api/admin/conversations/%d/messages", id), doc, nil)
		if n := len(msgs.Body["items"].([]any)); n != 1 {
			t.Fatalf("messages: %d (%s)", n, msgs.Raw)
		}
		if c := call(t, a.Router, "GET", "/api/admin/conversations/counts", doc, nil); c.Body["mine_unread"].(float64) != 0 {
			t.Fatalf("read by the doctor, still unread: %s", c.Raw)
		}

		// The patient waits in the mini-program (long poll) while the doctor replies.
		polled := make(chan response, 1)
		go func() {
			polled <- call(t, a.Router, "GET", fmt.Sprintf("/api/mp/conversations/%d/messages?after=%d&wait=10", id, lastID(msgs)), mpTok, nil)
		}()
		time.Sleep(100 * time.Millisecond)
		reply := func(text string) {
			t.Helper()
			if r := call(t, a.Router, "POST", fmt.Sprintf("/api/admin/conversations/%d/messages", id), doc, map[string]string{"content": text}); r.Status != 201 {
				t.Fatalf("reply: %d %s", r.Status, r.Raw)
			}
		}
		start := time.Now()
		reply("建议空腹复查血糖，可在小程序预约。")
		select {
		case p := <-polled:
			got := p.Body["items"].([]any)
			if len(got) != 1 || got[0].(map[string]any)["content"] != "建议空腹复查血糖，可在小程序预约。" {
				t.Fatalf("long poll: %s", p.Raw)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatal("the long poll did not return when the reply arrived")
			}
		case <-time.After(8 * time.Second):
			t.Fatal("the long poll never returned")
		}

		// Inside the window: a customer-service message carrying the reply.
		deliverAll(t, a)
		cs := sandboxSends(a, wxsandbox.APICustomSend, oaID)
		if len(cs) != 1 || cs[0].ErrCode != 0 || !strings.Contains(string(cs[0].Payload), "空腹复查") {
			t.Fatalf("customer message: %+v", cs)
		}
		if n := lastNotification(t, a, alice); n.Status != model.NotifySent || n.Channel != "customer" {
			t.Fatalf("notification: %s %s %s", n.Status, n.Channel, n.LastError)
		}

		// 49 hours later WeChat's window has closed: WeChat refuses (45015)
		// and the reply goes as a "your doctor replied" template notice.
		a.Sandbox.SetClock(func() time.Time { return time.Now().Add(49 * time.Hour) })
		defer a.Sandbox.SetClock(time.Now)
		reply("另外请注意清淡饮食。")
		deliverAll(t, a)
		cs = sandboxSends(a, wxsandbox.APICustomSend, oaID)
		if len(cs) != 2 || cs[1].ErrCode != wxsandbox.CodeWindowClosed {
			t.Fatalf("customer attempt outside the window: %+v", cs)
		}
		tm := sandboxSends(a, wxsandbox.APITemplateSend, oaID)
		if len(tm) != 1 || tm[0].ErrCode != 0 {
			t.Fatalf("template notice: %+v", tm)
		}
		if n := lastNotification(t, a, alice); n.Status != model.NotifySent || n.Channel != "template" {
			t.Fatalf("notification: %s %s %s", n.Status, n.Channel, n.LastError)
		}
		// Now we know the window is closed: no more customer attempts.
		reply("如有不适请及时就诊。")
		deliverAll(t, a)
		if cs = sandboxSends(a, wxsandbox.APICustomSend, oaID); len(cs) != 2 {
			t.Fatalf("tried the closed window again: %d attempts", len(cs))
		}
		if tm = sandboxSends(a, wxsandbox.APITemplateSend, oaID); len(tm) != 2 {
			t.Fatalf("template notices: %d", len(tm))
		}

		// A new message opens the window again: 5 customer messages, then notices.
		send("好的，谢谢医生", 9002)
		live.next(t, "谢谢医生")
		for i := 1; i <= 6; i++ {
			reply(fmt.Sprintf("第 %d 条回复", i))
		}
		deliverAll(t, a)
		ok := 0
		for _, s := range sandboxSends(a, wxsandbox.APICustomSend, oaID) {
			if s.ErrCode == 0 {
				ok++
			}
		}
		if ok != 1+5 {
			t.Fatalf("customer messages delivered: %d, want 1 + 5", ok)
		}
		if tm = sandboxSends(a, wxsandbox.APITemplateSend, oaID); len(tm) != 3 {
			t.Fatalf("the sixth reply should be a notice: %d template sends", len(tm))
		}
		// The mini-program shows the whole conversation.
		all := call(t, a.Router, "GET", fmt.Sprintf("/api/mp/conversations/%d/messages", id), mpTok, nil)
		if n := len(all.Body["items"].([]any)); n != 2+3+6 {
			t.Fatalf("patient sees %d messages, want 11", n)
		}
	})
}

func lastID(r response) uint64 {
	items := r.Body["items"].([]any)
	return uint64(items[len(items)-1].(map[string]any)["id"].(float64))
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("condition not reached")
}

var _ = service.DefaultTopic
