package app_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
	"careloop/service"
	"careloop/testenv"
	"careloop/wxconfig"
	"careloop/wxsandbox"
)

// duringWork puts the chat's clock on a Tuesday at 10:00 in Shanghai: doctors
// are at work (no automatic reply). Each reading is a second later, so
// that activity has an order.
func duringWork(a *app.App) time.Time {
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, model.Shanghai)
	var ticks atomic.Int64
	a.Chat.SetClock(func() time.Time { return at.Add(time.Duration(ticks.Add(1)) * time.Second) })
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
		if r := call(t, a.Router, "PUT", "/api/admin/chat/duty", tok, map[string]any{"on_duty": true, "department": dept}); r.Status != 200 || r.Body["on_duty"] != true || r.Body["department"] != dept {
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
		if cv["unread"].(float64) != 1 || cv["channel"] != "oa" || cv["doctor_id"].(float64) != float64(docID) || cv["doctor_name"] != "dr_li" {
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
		// Now we know the window is closed: no more customer attempts; and
		// the patient has just been told a doctor replied: not again.
		reply("如有不适请及时就诊。")
		deliverAll(t, a)
		if cs = sandboxSends(a, wxsandbox.APICustomSend, oaID); len(cs) != 2 {
			t.Fatalf("tried the closed window again: %d attempts", len(cs))
		}
		if tm = sandboxSends(a, wxsandbox.APITemplateSend, oaID); len(tm) != 1 {
			t.Fatalf("template notices: %d, want the first only", len(tm))
		}
		if n := lastNotification(t, a, alice); n.Status != model.NotifyCancelled || !strings.Contains(n.LastError, "不再重复") {
			t.Fatalf("second notice: %s %s", n.Status, n.LastError)
		}
		// An hour later (as far as notices go), a reply is a notice again.
		a.DB.Gorm().Model(&model.Notification{}).Where("patient_id = ? AND reason = ?", alice, "doctor_reply").
			Update("sent_at", time.Now().Add(-time.Hour).UTC())

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
		if tm = sandboxSends(a, wxsandbox.APITemplateSend, oaID); len(tm) != 2 {
			t.Fatalf("the sixth reply should be a notice: %d template sends", len(tm))
		}
		// The patient's list names the doctor (and not the staff-only fields).
		mine := call(t, a.Router, "GET", "/api/mp/conversations", mpTok, nil)
		if it := mine.Body["items"].([]any)[0].(map[string]any); it["doctor_name"] != "dr_li" || it["patient_name"] != nil {
			t.Fatalf("patient's list: %s", mine.Raw)
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
	eventually(t, 2*time.Second, "condition", cond)
}

// eventually polls cond every 20 ms until it holds, failing the test with
// what after within.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s not reached within %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startChat(t *testing.T, a *app.App, tok string, body map[string]any) (int, map[string]any) {
	t.Helper()
	r := call(t, a.Router, "POST", "/api/mp/conversations", tok, body)
	if r.Status != 201 && r.Status != 200 {
		t.Fatalf("start: %d %s", r.Status, r.Raw)
	}
	return r.Status, r.Body
}

func doctorOf(cv map[string]any) uint64 {
	if d, ok := cv["doctor_id"].(float64); ok {
		return uint64(d)
	}
	return 0
}

// TestChatRouting: the chosen doctor, else the department's doctors on duty,
// else any doctor on duty, in turn — also when 30 patients start at once;
// nobody on duty leaves it unassigned for a doctor to claim (one of five
// racing claims wins); transfer; a patient starting twice gets one
// conversation.
func TestChatRouting(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		duringWork(a)
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		// Nobody on duty yet.
		tok0, _ := login(t, h, "dev:p0")
		_, first := startChat(t, a, tok0, nil)
		if doctorOf(first) != 0 {
			t.Fatalf("routed with nobody on duty: %v", first)
		}
		d1, id1 := newDoctor(t, a, admin, "dr_a1", "内科")
		_, id2 := newDoctor(t, a, admin, "dr_a2", "内科")
		_, id3 := newDoctor(t, a, admin, "dr_b1", "妇科")
		off, idOff := newDoctor(t, a, admin, "dr_off", "-")

		// One of five racing claims gets the unassigned conversation.
		claimers := []string{d1, off}
		for i := 0; i < 3; i++ {
			tk, _ := newDoctor(t, a, admin, fmt.Sprintf("dr_c%d", i), "-")
			claimers = append(claimers, tk)
		}
		res := race(len(claimers), func(i int) response {
			return call(t, h, "POST", fmt.Sprintf("/api/admin/conversations/%v/claim", first["id"]), claimers[i], nil)
		})
		if c := countBy(res); c["200"] != 1 || c["409 already_assigned"] != 4 {
			t.Fatalf("claims: %v", c)
		}

		// Starting again on the same topic returns the open conversation, also when racing.
		tok1, _ := login(t, h, "dev:p1")
		starts := race(8, func(int) response {
			return call(t, h, "POST", "/api/mp/conversations", tok1, map[string]any{"topic": "报告解读"})
		})
		ids := map[any]bool{}
		for _, r := range starts {
			if r.Status != 201 && r.Status != 200 {
				t.Fatalf("start: %d %s", r.Status, r.Raw)
			}
			ids[r.Body["id"]] = true
		}
		if c := countBy(starts); len(ids) != 1 || c["201"] != 1 || c["200"] != 7 {
			t.Fatalf("8 concurrent starts: %v, %d conversations", c, len(ids))
		}

		// The chosen doctor (even off duty), then the department.
		if _, cv := startChat(t, a, tok1, map[string]any{"topic": "复查", "doctor_id": idOff}); doctorOf(cv) != idOff {
			t.Fatalf("chosen doctor: %v", cv)
		}
		if r := call(t, h, "POST", "/api/mp/conversations", tok1, map[string]any{"topic": "其他", "doctor_id": 1}); r.Status != 422 || r.ErrCode() != "not_a_doctor" {
			t.Fatalf("an admin is not a doctor to choose: %d %s", r.Status, r.Raw)
		}
		// The longest topic (32 Chinese characters) fits.
		if r := call(t, h, "POST", "/api/mp/conversations", tok1, map[string]any{"topic": strings.Repeat("查", 32)}); r.Status != 201 {
			t.Fatalf("long topic: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", "/api/mp/conversations", tok1, map[string]any{"topic": strings.Repeat("查", 33)}); r.Status != 400 {
			t.Fatalf("too long a topic: %d %s", r.Status, r.Raw)
		}
		if _, cv := startChat(t, a, tok1, map[string]any{"topic": "妇科问题", "department": "妇科"}); doctorOf(cv) != id3 {
			t.Fatalf("department: %v", cv)
		}

		// Round-robin among those on duty: 30 patients at once, 10 each.
		before := map[uint64]int{}
		var duties []model.DoctorDuty
		a.DB.Gorm().Find(&duties)
		for _, d := range duties {
			before[d.StaffID] = int(d.Assigned)
		}
		toks := make([]string, 30)
		for i := range toks {
			toks[i], _ = login(t, h, fmt.Sprintf("dev:rr%d", i))
		}
		rs := race(30, func(i int) response { return call(t, h, "POST", "/api/mp/conversations", toks[i], nil) })
		got := map[uint64]int{}
		for _, r := range rs {
			if r.Status != 201 {
				t.Fatalf("start: %d %s", r.Status, r.Raw)
			}
			got[doctorOf(r.Body)]++
		}
		// In turn: whatever each had before, the totals end within one of each other.
		total := map[uint64]int{id1: before[id1] + got[id1], id2: before[id2] + got[id2], id3: before[id3] + got[id3]}
		lo, hi := 1<<30, 0
		for _, n := range total {
			lo, hi = min(lo, n), max(hi, n)
		}
		if got[id1]+got[id2]+got[id3] != 30 || hi-lo > 1 || got[idOff] != 0 {
			t.Fatalf("round-robin: got %v, before %v", got, before)
		}

		// Transfer to another doctor: the patient sees a note.
		cvID := ids
		var conv uint64
		for k := range cvID {
			conv = uint64(k.(float64))
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/conversations/%d/transfer", conv), d1, map[string]any{"doctor_id": id2, "note": "内分泌方向"}); r.Status != 200 || doctorOf(r.Body) != id2 {
			t.Fatalf("transfer: %d %s", r.Status, r.Raw)
		}
		msgs := call(t, h, "GET", fmt.Sprintf("/api/mp/conversations/%d/messages", conv), tok1, nil)
		items := msgs.Body["items"].([]any)
		if last := items[len(items)-1].(map[string]any); last["sender"] != "system" || !strings.Contains(last["content"].(string), "dr_a2") {
			t.Fatalf("transfer note: %s", msgs.Raw)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/conversations/%d/transfer", conv), d1, map[string]any{"doctor_id": 1}); r.Status != 422 {
			t.Fatalf("transfer to a non-doctor: %d %s", r.Status, r.Raw)
		}

		// The inbox pages by last activity: the conversation just written to
		// comes first; pages cover every open conversation once.
		call(t, h, "POST", fmt.Sprintf("/api/mp/conversations/%v/messages", first["id"]), tok0, map[string]any{"content": "还在吗"})
		open := int(call(t, h, "GET", "/api/admin/conversations/counts", admin, nil).Body["all"].(float64))
		seen := map[float64]bool{}
		cursor, prev := "", ""
		for page := 0; ; page++ {
			r := call(t, h, "GET", "/api/admin/conversations?limit=7&cursor="+cursor, admin, nil)
			if r.Status != 200 {
				t.Fatalf("page: %d %s", r.Status, r.Raw)
			}
			for i, it := range r.Body["items"].([]any) {
				m := it.(map[string]any)
				if page == 0 && i == 0 && m["id"] != first["id"] {
					t.Fatalf("most recent first: %v", m)
				}
				if seen[m["id"].(float64)] || (prev != "" && m["last_message_at"].(string) > prev) {
					t.Fatalf("paging order: %v", m)
				}
				seen[m["id"].(float64)], prev = true, m["last_message_at"].(string)
			}
			if cursor = r.Body["next_cursor"].(string); cursor == "" {
				break
			}
		}
		if len(seen) != open || open < 30 {
			t.Fatalf("paged %d of %d", len(seen), open)
		}
		if r := call(t, h, "GET", "/api/admin/conversations?cursor=garbage", admin, nil); r.Status != 400 {
			t.Fatalf("bad cursor: %d", r.Status)
		}
	})
}

// TestChatHoursEscalationAndAccess: out of hours the patient is told when a
// doctor will answer (once per unanswered streak); an unanswered
// conversation escalates once after the configured time, with a task, and
// moves from an off-duty doctor to one on duty; patients see only their own
// conversations, roles other than doctor and admin see none, staff reads are
// audited; images; closing sends the after-chat survey.
func TestChatHoursEscalationAndAccess(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		// Sunday 21:00: out of hours (Monday to Saturday 08:00–17:30).
		clock := time.Date(2026, 11, 29, 21, 0, 0, 0, model.Shanghai)
		a.Chat.SetClock(func() time.Time { return clock })
		doc, docID := newDoctor(t, a, admin, "dr_wang", "内科")
		tok, pid := login(t, h, "dev:alice")
		_, cv := startChat(t, a, tok, nil)
		id := uint64(cv["id"].(float64))
		if doctorOf(cv) != docID {
			t.Fatalf("routing: %v", cv)
		}
		path := fmt.Sprintf("/api/mp/conversations/%d/messages", id)
		r := call(t, h, "POST", path, tok, map[string]any{"content": "晚上好，想咨询一下", "client_key": "k1"})
		if r.Status != 201 {
			t.Fatalf("send: %d %s", r.Status, r.Raw)
		}
		auto, _ := r.Body["auto_reply"].(map[string]any)
		if auto == nil || !strings.Contains(auto["content"].(string), "明天 08:00") {
			t.Fatalf("out-of-hours reply: %s", r.Raw)
		}
		// Resending the same message (client_key) stores nothing new; a second
		// message gets no second automatic reply.
		if r := call(t, h, "POST", path, tok, map[string]any{"content": "晚上好，想咨询一下", "client_key": "k1"}); r.Status != 201 || r.Body["auto_reply"] != nil {
			t.Fatalf("resend: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", path, tok, map[string]any{"content": "是关于血压的"}); r.Body["auto_reply"] != nil {
			t.Fatalf("second auto reply: %s", r.Raw)
		}
		if all := call(t, h, "GET", path, tok, nil); len(all.Body["items"].([]any)) != 3 {
			t.Fatalf("messages: %s", all.Raw)
		}
		// Bad input.
		for _, body := range []map[string]any{{"content": ""}, {"content": strings.Repeat("长", 1001)}, {"kind": "video", "content": "x"}, {"kind": "image", "content": "file:///etc/passwd"}} {
			if r := call(t, h, "POST", path, tok, body); r.Status != 400 {
				t.Fatalf("bad message %v: %d %s", body["kind"], r.Status, r.Raw)
			}
		}

		// Escalation counts working time only: nothing on Sunday night.
		if err := a.Chat.Escalate(context.Background(), clock.Add(2*time.Hour)); err != nil {
			t.Fatal(err)
		}
		// Monday 09:00 the doctor has gone off duty and nobody answered:
		// two schedulers run at once; one escalation, one task, and the
		// conversation moves to the doctor on duty.
		_, onDuty := newDoctor(t, a, admin, "dr_zhao", "内科")
		if r := call(t, h, "PUT", "/api/admin/chat/duty", doc, map[string]any{"on_duty": false, "department": "内科"}); r.Status != 200 || r.Body["on_duty"] != false {
			t.Fatalf("off duty: %d", r.Status)
		}
		monday := time.Date(2026, 11, 30, 9, 0, 0, 0, model.Shanghai)
		errs := make(chan error, 2)
		for i := 0; i < 2; i++ {
			go func() { errs <- a.Chat.Escalate(context.Background(), monday) }()
		}
		for i := 0; i < 2; i++ {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		var tasks int64
		a.DB.Gorm().Model(&model.Task{}).Where("kind = ? AND patient_id = ?", "chat_escalation", pid).Count(&tasks)
		if tasks != 1 {
			t.Fatalf("escalation tasks: %d", tasks)
		}
		esc := call(t, h, "GET", "/api/admin/conversations?escalated=true", admin, nil)
		items := esc.Body["items"].([]any)
		if len(items) != 1 || doctorOf(items[0].(map[string]any)) != onDuty {
			t.Fatalf("escalated: %s", esc.Raw)
		}

		// Who may see what.
		tokB, _ := login(t, h, "dev:bob")
		if r := call(t, h, "GET", path, tokB, nil); r.Status != 404 {
			t.Fatalf("another patient's conversation: %d", r.Status)
		}
		if r := call(t, h, "POST", path, tokB, map[string]any{"content": "hi"}); r.Status != 404 {
			t.Fatalf("writing into another's conversation: %d", r.Status)
		}
		mkt := newStaff(t, a, admin, "mkt1", model.RoleMarketing)
		desk := newStaff(t, a, admin, "desk1", model.RoleFrontDesk)
		for _, tk := range []string{mkt, desk} {
			if r := call(t, h, "GET", fmt.Sprintf("/api/admin/conversations/%d/messages", id), tk, nil); r.Status != 403 {
				t.Fatalf("non-clinical role reads chat: %d", r.Status)
			}
		}
		if r := call(t, h, "GET", "/api/admin/conversations", tok, nil); r.Status != 403 {
			t.Fatalf("patient token on the inbox: %d", r.Status)
		}
		var audits int64
		call(t, h, "GET", fmt.Sprintf("/api/admin/conversations/%d/messages", id), admin, nil)
		a.DB.Gorm().Model(&model.AuditLog{}).Where("action = ? AND patient_id = ?", "chat.read", pid).Count(&audits)
		if audits != 1 {
			t.Fatalf("audited reads: %d", audits)
		}

		// An image: uploaded, sent, visible to the patient and (audited) to staff only.
		png := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 64)...)
		up := httptest.NewRecorder()
		req := httptest.NewRequest("POST", "/api/mp/chat/images", strings.NewReader(string(png)))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "image/png")
		h.ServeHTTP(up, req)
		var ref map[string]any
		_ = jsonUnmarshal(up.Body.Bytes(), &ref)
		content, _ := ref["content"].(string)
		if up.Code != 201 || !strings.HasPrefix(content, "chat/images/") {
			t.Fatalf("upload: %d %s", up.Code, up.Body.String())
		}
		if r := call(t, h, "POST", path, tok, map[string]any{"kind": "image", "content": content}); r.Status != 201 {
			t.Fatalf("send image: %d %s", r.Status, r.Raw)
		}
		name := strings.TrimPrefix(content, "chat/images/")
		get := func(prefix, tk string) int {
			rec := httptest.NewRecorder()
			rq := httptest.NewRequest("GET", prefix+"/chat/images/"+name, nil)
			rq.Header.Set("Authorization", "Bearer "+tk)
			h.ServeHTTP(rec, rq)
			if rec.Code == 200 && rec.Body.Len() != len(png) {
				t.Fatalf("image bytes: %d", rec.Body.Len())
			}
			return rec.Code
		}
		if get("/api/mp", tok) != 200 || get("/api/mp", tokB) != 404 || get("/api/admin", doc) != 200 || get("/api/admin", mkt) != 403 {
			t.Fatal("image access")
		}
		a.DB.Gorm().Model(&model.AuditLog{}).Where("action = ? AND patient_id = ?", "chat.image", pid).Count(&audits)
		if audits != 1 {
			t.Fatalf("audited image reads: %d", audits)
		}
		up = httptest.NewRecorder()
		req = httptest.NewRequest("POST", "/api/mp/chat/images", strings.NewReader("GIF89a not allowed"))
		req.Header.Set("Authorization", "Bearer "+tok)
		h.ServeHTTP(up, req)
		if up.Code != 400 {
			t.Fatalf("a GIF: %d", up.Code)
		}

		// Closing with the after-chat survey invites the patient once.
		def := map[string]any{"code": "chat", "name": "咨询满意度", "trigger": model.TriggerAfterChat,
			"questions": []map[string]any{{"id": "overall", "kind": "rating", "title": "您对本次咨询满意吗", "required": true}}}
		if r := call(t, h, "POST", "/api/admin/surveys", admin, def); r.Status != 201 {
			t.Fatalf("survey: %d %s", r.Status, r.Raw)
		}
		closeRes := call(t, h, "POST", fmt.Sprintf("/api/admin/conversations/%d/close", id), admin, map[string]any{"survey": true})
		if closeRes.Status != 200 || closeRes.Body["status"] != "closed" {
			t.Fatalf("close: %d %s", closeRes.Status, closeRes.Raw)
		}
		var invites int64
		a.DB.Gorm().Model(&model.SurveyInvite{}).Where("patient_id = ? AND occurrence = ?", pid, fmt.Sprintf("chat-%d", id)).Count(&invites)
		if invites != 1 {
			t.Fatalf("after-chat invites: %d", invites)
		}
		if r := call(t, h, "POST", path, tok, map[string]any{"content": "还在吗"}); r.Status != 409 || r.ErrCode() != "conversation_closed" {
			t.Fatalf("message into a closed conversation: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/conversations/%d/messages", id), doc, map[string]any{"content": "x"}); r.Status != 409 {
			t.Fatalf("reply into a closed conversation: %d", r.Status)
		}
		// A new conversation on the same topic can start now.
		if st, cv2 := startChat(t, a, tok, nil); st != 201 || cv2["id"] == cv["id"] {
			t.Fatalf("new conversation after closing: %d %v", st, cv2)
		}
	})
}

// TestChatSettingsAndCannedReplies: admins set the hours (validated);
// canned replies are personal or shared (shared by admins only).
func TestChatSettingsAndCannedReplies(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	h := a.Router
	admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
	doc, _ := newDoctor(t, a, admin, "dr_q", "内科")
	good := map[string]any{"work_start": "07:30", "work_end": "20:00", "workdays": []int{1, 2, 3, 4, 5, 6, 7}, "escalate_after_minutes": 10, "off_hours_reply": "医生将于{next}回复"}
	if r := call(t, h, "PUT", "/api/admin/chat/settings", doc, good); r.Status != 403 {
		t.Fatalf("a doctor changes settings: %d", r.Status)
	}
	if r := call(t, h, "PUT", "/api/admin/chat/settings", admin, good); r.Status != 200 {
		t.Fatalf("settings: %d %s", r.Status, r.Raw)
	}
	bad := map[string]any{"work_start": "20:00", "work_end": "07:30", "workdays": []int{1}, "escalate_after_minutes": 10, "off_hours_reply": "x"}
	if r := call(t, h, "PUT", "/api/admin/chat/settings", admin, bad); r.Status != 400 || r.ErrCode() != "invalid_chat_settings" {
		t.Fatalf("bad settings: %d %s", r.Status, r.Raw)
	}
	if r := call(t, h, "GET", "/api/admin/chat/settings", doc, nil); r.Body["work_start"] != "07:30" {
		t.Fatalf("settings read back: %s", r.Raw)
	}
	// Sunday 19:00 is within the new hours: no automatic reply.
	a.Chat.SetClock(func() time.Time { return time.Date(2026, 11, 29, 19, 0, 0, 0, model.Shanghai) })
	tok, _ := login(t, h, "dev:amy")
	_, cv := startChat(t, a, tok, nil)
	if r := call(t, h, "POST", fmt.Sprintf("/api/mp/conversations/%v/messages", cv["id"]), tok, map[string]any{"content": "在吗"}); r.Body["auto_reply"] != nil {
		t.Fatalf("auto reply within the new hours: %s", r.Raw)
	}
	// A patient cannot flood the doctors: 20 messages a minute.
	codes := map[int]int{}
	for i := 0; i < 25; i++ {
		codes[call(t, h, "POST", fmt.Sprintf("/api/mp/conversations/%v/messages", cv["id"]), tok, map[string]any{"content": fmt.Sprint("消息", i)}).Status]++
	}
	if codes[201] != 19 || codes[429] != 6 {
		t.Fatalf("rate limit: %v", codes)
	}

	if r := call(t, h, "POST", "/api/admin/chat/canned-replies", doc, map[string]any{"title": "复查", "content": "建议三个月后复查", "shared": true}); r.Status != 403 {
		t.Fatalf("a doctor adds a shared reply: %d", r.Status)
	}
	mine := call(t, h, "POST", "/api/admin/chat/canned-replies", doc, map[string]any{"title": "复查", "content": "建议三个月后复查"})
	shared := call(t, h, "POST", "/api/admin/chat/canned-replies", admin, map[string]any{"title": "问候", "content": "您好，请问有什么可以帮您？", "shared": true})
	other := newStaff(t, a, admin, "dr_r", model.RoleDoctor)
	if mine.Status != 201 || shared.Status != 201 {
		t.Fatalf("canned: %d %d", mine.Status, shared.Status)
	}
	// The demo's two shared replies, the admin's shared one and the doctor's own.
	if l := call(t, h, "GET", "/api/admin/chat/canned-replies", doc, nil); len(l.Body["items"].([]any)) != 4 {
		t.Fatalf("doctor's replies: %s", l.Raw)
	}
	if l := call(t, h, "GET", "/api/admin/chat/canned-replies", other, nil); len(l.Body["items"].([]any)) != 3 || strings.Contains(string(l.Raw), "三个月") {
		t.Fatalf("another doctor sees: %s", l.Raw)
	}
	if r := call(t, h, "DELETE", fmt.Sprintf("/api/admin/chat/canned-replies/%v", mine.Body["id"]), other, nil); r.Status != 404 {
		t.Fatalf("deleting another's reply: %d", r.Status)
	}
	if r := call(t, h, "DELETE", fmt.Sprintf("/api/admin/chat/canned-replies/%v", mine.Body["id"]), doc, nil); r.Status != 204 {
		t.Fatalf("delete: %d", r.Status)
	}
	if r := call(t, h, "GET", "/api/mp/doctors", tok, nil); len(r.Body["items"].([]any)) != 3 { // with the demo doctor
		t.Fatalf("doctors for patients: %s", r.Raw)
	}
}

// TestChatLiveAcrossInstances: a patient's message handled by one API
// instance reaches a doctor's live stream held by another, through Redis.
func TestChatLiveAcrossInstances(t *testing.T) {
	prefix := "careloop-test-" + testenv.Suffix() + ":"
	rdb := testenv.Redis(t) // skips (or fails in CI) without Redis; cleans its own prefix
	shared := func(c *app.Config) { c.RedisAddr, c.RedisPrefix = testenv.RedisAddr(), prefix }
	a1 := newApp(t, "mysql", shared)
	a2 := newApp(t, "mysql", func(c *app.Config) { shared(c); c.MySQLDSN = a1.Cfg.MySQLDSN })
	t.Cleanup(func() { testenv.DeletePrefix(rdb.Client(), prefix) })
	duringWork(a1)
	srv2 := httptest.NewServer(a2.Router)
	t.Cleanup(srv2.Close)
	admin := staffLogin(t, a1.Router, app.DemoAdminUser, app.DemoAdminPassword)
	doc, _ := newDoctor(t, a1, admin, "dr_x", "内科")
	live := openStream(t, srv2, doc) // connected to instance 2
	time.Sleep(100 * time.Millisecond)
	tok, _ := login(t, a1.Router, "dev:alice")
	_, cv := startChat(t, a1, tok, nil)
	if r := call(t, a1.Router, "POST", fmt.Sprintf("/api/mp/conversations/%v/messages", cv["id"]), tok, map[string]any{"content": "跨实例的消息"}); r.Status != 201 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	live.next(t, "跨实例的消息")

	// An image uploaded through one instance is served by the other (files
	// live in MySQL: API instances keep nothing of their own).
	jpeg := append([]byte{0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, 'J', 'F', 'I', 'F', 0}, make([]byte, 200)...)
	req := httptest.NewRequest("POST", "/api/mp/chat/images", strings.NewReader(string(jpeg)))
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	a1.Router.ServeHTTP(rec, req)
	var ref map[string]any
	_ = jsonUnmarshal(rec.Body.Bytes(), &ref)
	content, _ := ref["content"].(string)
	if rec.Code != 201 {
		t.Fatalf("upload: %d %s", rec.Code, rec.Body.String())
	}
	if r := call(t, a1.Router, "POST", fmt.Sprintf("/api/mp/conversations/%v/messages", cv["id"]), tok, map[string]any{"kind": "image", "content": content}); r.Status != 201 {
		t.Fatalf("send: %d %s", r.Status, r.Raw)
	}
	req = httptest.NewRequest("GET", "/api/admin/chat/images/"+strings.TrimPrefix(content, "chat/images/"), nil)
	req.Header.Set("Authorization", "Bearer "+doc)
	rec = httptest.NewRecorder()
	a2.Router.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Body.Len() != len(jpeg) {
		t.Fatalf("image from the other instance: %d, %d bytes", rec.Code, rec.Body.Len())
	}
}

// TestChatOAImageFromStranger: an image from a follower WeChat gives no
// unionid for becomes a conversation of a new patient (first touch "oa"),
// with WeChat's picture link; a keyword command is answered, not routed.
func TestChatOAImageFromStranger(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		duringWork(a)
		now := time.Now()
		a.Sandbox.SetFollower(a.Cfg.OAAppID, "wx-stranger", true, "")
		img := []byte(fmt.Sprintf("<xml><ToUserName><![CDATA[gh_sandbox]]></ToUserName><FromUserName><![CDATA[wx-stranger]]></FromUserName>"+
			"<CreateTime>%d</CreateTime><MsgType><![CDATA[image]]></MsgType><PicUrl><![CDATA[http://mmbiz.qpic.cn/mmbiz_jpg/abc/0]]></PicUrl>"+
			"<MediaId><![CDATA[media-1]]></MediaId><MsgId>7001</MsgId></xml>", now.Unix()))
		if r := postCallback(t, a, build(t, a, img, true, now)); r.Status != 200 {
			t.Fatalf("image: %d %s", r.Status, r.Raw)
		}
		var f model.Follower
		if err := a.DB.Gorm().Where("open_id = ?", "wx-stranger").Take(&f).Error; err != nil || f.PatientID == nil {
			t.Fatalf("follower: %+v %v", f, err)
		}
		var p model.Patient
		a.DB.Gorm().Where("id = ?", *f.PatientID).Take(&p)
		if p.Source != "oa" {
			t.Fatalf("new patient: %+v", p)
		}
		var msgs []model.ChatMessage
		a.DB.Gorm().Table("chat_messages").Joins("JOIN conversations c ON c.id = chat_messages.conversation_id").
			Where("c.patient_id = ?", p.ID).Find(&msgs)
		if len(msgs) != 1 || msgs[0].Kind != "image" || msgs[0].Content != "http://mmbiz.qpic.cn/mmbiz_jpg/abc/0" {
			t.Fatalf("messages: %+v", msgs)
		}
		// An exact keyword is a command: answered, not a question for a doctor.
		admin := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword)
		call(t, a.Router, "POST", "/api/admin/oa/auto-replies", admin, map[string]any{"keyword": "报告", "match": "exact", "reply": "请在小程序“我的报告”查看"})
		r := postCallback(t, a, build(t, a, wxsandbox.TextMessage("wx-stranger", "报告", 7002, now), true, now))
		if r.Status != 200 || !strings.Contains(string(r.Raw), "<Encrypt>") {
			t.Fatalf("keyword: %d %s", r.Status, r.Raw)
		}
		var n int64
		a.DB.Gorm().Model(&model.ChatMessage{}).Count(&n)
		if n != 1 {
			t.Fatalf("the keyword was routed to the chat: %d messages", n)
		}
		// A "contains" keyword is matched before the message is filed too.
		call(t, a.Router, "POST", "/api/admin/oa/auto-replies", admin, map[string]any{"keyword": "停车", "match": "contains", "reply": "院内地下停车场，体检客户免费 2 小时"})
		if r := postCallback(t, a, build(t, a, wxsandbox.TextMessage("wx-stranger", "请问你们那里停车方便吗", 7003, now), true, now)); r.Status != 200 {
			t.Fatalf("contains keyword: %d %s", r.Status, r.Raw)
		}
		a.DB.Gorm().Model(&model.ChatMessage{}).Count(&n)
		if n != 1 {
			t.Fatalf("a contains keyword was filed into the chat: %d messages", n)
		}
	})
}

// TestChatLiveStreamSession: opening a stream is audited; logging out or a
// disabled account ends the stream at the next session check.
func TestChatLiveStreamSession(t *testing.T) {
	a := newApp(t, "sqlite", func(c *app.Config) { c.LiveHeartbeat = 100 * time.Millisecond })
	srv := httptest.NewServer(a.Router)
	t.Cleanup(srv.Close)
	admin := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword)
	doc, docID := newDoctor(t, a, admin, "dr_s", "内科")
	live := openStream(t, srv, doc)
	var n int64
	a.DB.Gorm().Model(&model.AuditLog{}).Where("action = ? AND staff_id = ?", "chat.stream", docID).Count(&n)
	if n != 1 {
		t.Fatalf("stream audit entries: %d", n)
	}
	time.Sleep(300 * time.Millisecond) // heartbeats pass while the session is valid
	select {
	case _, ok := <-live.events:
		if !ok {
			t.Fatal("the stream ended while the session was valid")
		}
	default:
	}
	// A second doctor's stream survives the first one's logout, and ends
	// when an admin disables the account.
	doc2, doc2ID := newDoctor(t, a, admin, "dr_s2", "内科")
	live2 := openStream(t, srv, doc2)
	if r := call(t, a.Router, "POST", "/api/admin/logout", doc, nil); r.Status != 204 {
		t.Fatalf("logout: %d", r.Status)
	}
	ended := func(s *sse, what string) {
		t.Helper()
		select {
		case _, ok := <-s.events:
			if ok {
				t.Fatalf("an event after %s", what)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("the stream outlived %s", what)
		}
	}
	ended(live, "logout")
	select {
	case _, ok := <-live2.events:
		if !ok {
			t.Fatal("another session's stream ended")
		}
	case <-time.After(300 * time.Millisecond):
	}
	if r := call(t, a.Router, "PUT", fmt.Sprintf("/api/admin/staff/%d", doc2ID), admin, map[string]any{"disabled": true}); r.Status != 200 {
		t.Fatalf("disable: %d %s", r.Status, r.Raw)
	}
	ended(live2, "the account being disabled")
}

// TestChatUnassignedEscalates: a conversation that came in while nobody was
// on duty is routed when it escalates.
func TestChatUnassignedEscalates(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	at := duringWork(a)
	tok, _ := login(t, a.Router, "dev:night")
	_, cv := startChat(t, a, tok, map[string]any{"department": "儿科"})
	call(t, a.Router, "POST", fmt.Sprintf("/api/mp/conversations/%v/messages", cv["id"]), tok, map[string]any{"content": "孩子发烧了"})
	admin := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword)
	_, docID := newDoctor(t, a, admin, "dr_peds", "内科") // on duty, another department
	if err := a.Chat.Escalate(context.Background(), at.Add(29*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if c, _ := a.Chat.Get(context.Background(), service.System, uint64(cv["id"].(float64))); c.EscalatedAt != nil {
		t.Fatal("escalated before its time")
	}
	if err := a.Chat.Escalate(context.Background(), at.Add(31*time.Minute)); err != nil {
		t.Fatal(err)
	}
	c, _ := a.Chat.Get(context.Background(), service.System, uint64(cv["id"].(float64)))
	if c.EscalatedAt == nil || c.DoctorID == nil || *c.DoctorID != docID {
		t.Fatalf("escalated: %+v", c)
	}
}

// TestChatOASlowLinkAnswersInTime: linking an unknown follower waits on
// WeChat; when WeChat is slow the callback still answers within WeChat's
// 5 seconds and the message is filed once linking is done.
func TestChatOASlowLinkAnswersInTime(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	duringWork(a)
	_, alice := login(t, a.Router, "dev:alice")
	oaID := wxsandbox.OAOpenID("alice")
	a.Sandbox.SetFollower(a.Cfg.OAAppID, oaID, true, "")
	a.Sandbox.FailNext(wxsandbox.APIUserInfo, 1, wxsandbox.Fault{Delay: 6 * time.Second})
	now := time.Now()
	start := time.Now()
	r := postCallback(t, a, build(t, a, wxsandbox.TextMessage(oaID, "请问体检前要空腹吗", 8101, now), true, now))
	if took := time.Since(start); r.Status != 200 || took > 5*time.Second {
		t.Fatalf("callback: %d after %s", r.Status, took)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		var n int64
		n = messagesWith(a, "c.patient_id = ?", alice, "请问体检前要空腹吗")
		if n == 1 {
			return // filed under Alice, found through the unionid
		}
		if time.Now().After(deadline) {
			t.Fatal("the message was never filed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The demo doctor is 王医生 as the README says, in the staff list and the
// patients' list of doctors.
func TestDemoDoctorHasItsName(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	admin := staffLogin(t, a.Router, app.DemoAdminUser, app.DemoAdminPassword)
	var names []string
	for _, it := range call(t, a.Router, "GET", "/api/admin/staff", admin, nil).Body["items"].([]any) {
		names = append(names, it.(map[string]any)["name"].(string))
	}
	if !slices.Contains(names, "王医生") || slices.Contains(names, "doctor") {
		t.Fatalf("staff names: %v", names)
	}
	tok, _ := login(t, a.Router, "dev:looking")
	docs := call(t, a.Router, "GET", "/api/mp/doctors", tok, nil)
	if !strings.Contains(string(docs.Raw), "王医生") {
		t.Fatalf("doctors for patients: %s", docs.Raw)
	}
}

// The sandbox plays the patient's side of WeChat: follow, write, click;
// careloop's own callback receives exactly what WeChat would send, and the
// sandbox's state (follower, 48-hour window) changes as WeChat's would.
func TestSandboxPlaysThePatient(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		duringWork(a)
		h := a.Router
		const who = "oa-sandbox-zhang"
		r := call(t, h, "POST", "/sandbox/wechat/oa/event", "", map[string]any{"openid": who, "event": "subscribe", "key": "poster-lobby"})
		if r.Status != 200 || r.Body["status"] != float64(200) || r.Body["reply"] != service.DefaultWelcome {
			t.Fatalf("follow: %d %s", r.Status, r.Raw)
		}
		var f model.Follower
		if err := a.DB.Gorm().Where("open_id = ?", who).Take(&f).Error; err != nil || !f.Subscribed || f.Scene != "poster-lobby" {
			t.Fatalf("follower after subscribe: %+v %v", f, err)
		}
		// Outside the window WeChat refuses a customer message; a message opens it.
		if err := a.WX.Customer(context.Background(), who, "您好"); wxconfig.CodeOf(err) != wxsandbox.CodeWindowClosed {
			t.Fatalf("customer message before the patient wrote: %v", err)
		}
		r = call(t, h, "POST", "/sandbox/wechat/oa/user-message", "", map[string]any{"openid": who, "content": "我的报告里白细胞偏高要紧吗"})
		if r.Status != 200 || r.Body["status"] != float64(200) {
			t.Fatalf("user message: %d %s", r.Status, r.Raw)
		}
		waitFor(t, func() bool {
			var n int64
			n = messagesWith(a, "1 = ?", 1, "我的报告里白细胞偏高要紧吗")
			return n == 1
		})
		if err := a.WX.Customer(context.Background(), who, "您好，医生稍后回复"); err != nil {
			t.Fatalf("customer message inside the window: %v", err)
		}
		if r := call(t, h, "POST", "/sandbox/wechat/oa/user-image", "", map[string]any{"openid": who, "pic_url": "http://mmbiz.qpic.cn/sandbox/report.jpg"}); r.Status != 200 || r.Body["status"] != float64(200) {
			t.Fatalf("user image: %d %s", r.Status, r.Raw)
		}
		waitFor(t, func() bool {
			var n int64
			n = messagesWith(a, "chat_messages.kind = ?", "image", "http://mmbiz.qpic.cn/sandbox/report.jpg")
			return n == 1
		})
		// A menu click is answered by its keyword reply.
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		call(t, h, "POST", "/api/admin/oa/auto-replies", admin, map[string]any{"keyword": "HOURS", "match": "exact", "reply": "每天 7:30–11:00 体检"})
		if r := call(t, h, "POST", "/sandbox/wechat/oa/event", "", map[string]any{"openid": who, "event": "CLICK", "key": "HOURS"}); r.Body["reply"] != "每天 7:30–11:00 体检" {
			t.Fatalf("click: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", "/sandbox/wechat/oa/event", "", map[string]any{"openid": who, "event": "unsubscribe"}); r.Status != 200 {
			t.Fatalf("unfollow: %d %s", r.Status, r.Raw)
		}
		a.DB.Gorm().Where("open_id = ?", who).Take(&f)
		if f.Subscribed {
			t.Fatal("still a follower after unsubscribe")
		}
		if r := call(t, h, "POST", "/sandbox/wechat/oa/event", "", map[string]any{"openid": who, "event": "LOCATION"}); r.Status != 400 {
			t.Fatalf("unknown event: %d", r.Status)
		}
	})
}

func uploadImage(t *testing.T, a *app.App, tok string, data []byte) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/api/mp/chat/images", strings.NewReader(string(data)))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "image/png")
	a.Router.ServeHTTP(rec, req)
	var ref map[string]any
	_ = jsonUnmarshal(rec.Body.Bytes(), &ref)
	content, _ := ref["content"].(string)
	return rec.Code, content
}

// Chat images: an upload is sent once, by the patient who uploaded it, and
// is then seen only with its conversation; an outside address is no image;
// uploads are limited, and an upload never sent expires.
func TestChatUploads(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		tokA, _ := login(t, h, "dev:uploader")
		tokB, _ := login(t, h, "dev:borrower")
		_, cvA := startChat(t, a, tokA, map[string]any{"topic": "报告解读"})
		_, cvB := startChat(t, a, tokB, map[string]any{"topic": "报告解读"})
		pathA := fmt.Sprintf("/api/mp/conversations/%d/messages", uint64(cvA["id"].(float64)))
		pathB := fmt.Sprintf("/api/mp/conversations/%d/messages", uint64(cvB["id"].(float64)))
		png := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 64)...)
		code, ref := uploadImage(t, a, tokA, png)
		if code != 201 {
			t.Fatalf("upload: %d", code)
		}
		if r := call(t, h, "POST", pathB, tokB, map[string]any{"kind": "image", "content": ref}); r.Status != 400 || r.ErrCode() != "invalid_image" {
			t.Fatalf("another patient sends A's upload: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", pathA, tokA, map[string]any{"kind": "image", "content": ref}); r.Status != 201 {
			t.Fatalf("A sends it: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", pathA, tokA, map[string]any{"kind": "image", "content": ref}); r.Status != 400 {
			t.Fatalf("the same upload sent twice: %d %s", r.Status, r.Raw)
		}
		for _, outside := range []string{"https://evil.example/track.png", "http://mmbiz.qpic.cn/forged/0"} {
			if r := call(t, h, "POST", pathA, tokA, map[string]any{"kind": "image", "content": outside}); r.Status != 400 || r.ErrCode() != "invalid_image" {
				t.Fatalf("an outside image from the mini-program %s: %d %s", outside, r.Status, r.Raw)
			}
		}
		name := strings.TrimPrefix(ref, "chat/images/")
		for who, want := range map[string]int{tokA: 200, tokB: 404} {
			rec := httptest.NewRecorder()
			rq := httptest.NewRequest("GET", "/api/mp/chat/images/"+name, nil)
			rq.Header.Set("Authorization", "Bearer "+who)
			h.ServeHTTP(rec, rq)
			if rec.Code != want {
				t.Errorf("image for %s: %d, want %d", map[bool]string{true: "A", false: "B"}[who == tokA], rec.Code, want)
			}
		}
		// An upload never sent expires with its file.
		_, stale := uploadImage(t, a, tokA, png)
		if err := a.Chat.ExpireUploads(context.Background(), time.Now().Add(25*time.Hour)); err != nil {
			t.Fatal(err)
		}
		var left int64
		a.DB.Gorm().Model(&model.ChatUpload{}).Where("`key` = ?", strings.TrimPrefix(stale, "chat/images/")).Count(&left)
		if left != 0 {
			t.Fatal("an unsent upload did not expire")
		}
		if r := call(t, h, "POST", pathA, tokA, map[string]any{"kind": "image", "content": stale}); r.Status != 400 {
			t.Fatalf("an expired upload sent: %d", r.Status)
		}
		// Ten uploads a minute.
		last := 0
		for i := 0; i < 11; i++ {
			last, _ = uploadImage(t, a, tokB, png)
		}
		if last != 429 {
			t.Fatalf("the 11th upload in a minute: %d, want 429", last)
		}
	})
}

// messagesWith counts the chat messages (joined with their conversation as
// c) that where selects and whose content is content — compared after
// reading, as contents are sealed at rest.
func messagesWith(a *app.App, where string, arg any, content string) int64 {
	var msgs []model.ChatMessage
	a.DB.Gorm().Table("chat_messages").Select("chat_messages.*").Joins("JOIN conversations c ON c.id = chat_messages.conversation_id").
		Where(where, arg).Find(&msgs)
	var n int64
	for _, m := range msgs {
		if m.Content == content {
			n++
		}
	}
	return n
}
