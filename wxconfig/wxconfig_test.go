package wxconfig_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/silenceper/wechat/v2/miniprogram/subscribe"
	"github.com/silenceper/wechat/v2/officialaccount/message"

	"careloop/coord"
	"careloop/testenv"
	"careloop/wxconfig"
	"careloop/wxsandbox"
)

const (
	mpApp, mpSecret = "wxmp-test", "mp-secret-value"
	oaApp, oaSecret = "wxoa-test", "oa-secret-value"
	tmplCredit      = "tmpl-credit"
	tmplLongTerm    = "tmpl-longterm"
	tmplOA          = "tmpl-oa"
)

type rig struct {
	sb  *wxsandbox.Sandbox
	url string
	wx  *wxconfig.Clients
}

// newRig starts a sandbox over httptest and clients pointed at it. The SDK's
// HTTP client is process-wide, so these tests do not run in parallel.
func newRig(t *testing.T, store coord.Store, timeout time.Duration) *rig {
	t.Helper()
	sb := wxsandbox.New(wxsandbox.Options{
		Apps: []wxsandbox.App{
			{AppID: mpApp, Secret: mpSecret, Kind: wxsandbox.MiniProgram},
			{AppID: oaApp, Secret: oaSecret, Kind: wxsandbox.OfficialAccount},
		},
		Templates: []wxsandbox.Template{{ID: tmplCredit}, {ID: tmplLongTerm, LongTerm: true}, {ID: tmplOA}},
	})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	return &rig{sb: sb, url: srv.URL, wx: clients(t, store, srv.URL, timeout)}
}

func clients(t *testing.T, store coord.Store, base string, timeout time.Duration) *wxconfig.Clients {
	hc, err := wxconfig.NewHTTPClient(timeout, base, nil)
	if err != nil {
		t.Fatal(err)
	}
	wxconfig.Install(hc)
	return wxconfig.New(wxconfig.Config{MPAppID: mpApp, MPSecret: mpSecret, OAAppID: oaApp, OASecret: oaSecret},
		store, hc, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

func (r *rig) subscribeSend(ctx context.Context, openID, tmpl string) error {
	return r.wx.DoMP(ctx, "subscribe send", func(ctx context.Context) error {
		_, err := r.wx.MP.GetSubscribe().SendGetMsgID(&subscribe.Message{
			ToUser: openID, TemplateID: tmpl,
			Data: map[string]*subscribe.DataItem{"thing1": {Value: "年度体检"}, "time2": {Value: "2026-11-25 08:30"}},
		})
		return err
	})
}

func code(err error) int { return wxconfig.CodeOf(err) }

func TestCode2Session(t *testing.T) {
	r := newRig(t, coord.NewMemory(), 5*time.Second)
	ctx := context.Background()
	c := r.sb.IssueLoginCode("alice")
	s, err := r.wx.Code2Session(ctx, c)
	if err != nil || s.OpenID != "alice" || s.UnionID != wxsandbox.UnionID("alice") {
		t.Fatalf("first use: %+v %v", s, err)
	}
	if _, err := r.wx.Code2Session(ctx, c); code(err) != wxsandbox.CodeCodeUsed {
		t.Fatalf("second use of a code: want 40163, got %v", err)
	}
	if _, err := r.wx.Code2Session(ctx, "not-a-code"); code(err) != wxsandbox.CodeInvalidCode {
		t.Fatalf("bad code: want 40029, got %v", err)
	}
	// dev: codes only work where the sandbox allows them (sandbox mode).
	if _, err := r.wx.Code2Session(ctx, "dev:bob"); code(err) != wxsandbox.CodeInvalidCode {
		t.Fatalf("dev code without DevLogins: want 40029, got %v", err)
	}
}

func TestSubscribeSendCredits(t *testing.T) {
	r := newRig(t, coord.NewMemory(), 5*time.Second)
	ctx := context.Background()
	if err := r.subscribeSend(ctx, "alice", tmplCredit); code(err) != wxconfig.CodeSubscribeRefused {
		t.Fatalf("send without credit: want 43101, got %v", err)
	}
	r.sb.GrantSubscribe(mpApp, "alice", tmplCredit, 1)
	if err := r.subscribeSend(ctx, "alice", tmplCredit); err != nil {
		t.Fatalf("send with a credit: %v", err)
	}
	if err := r.subscribeSend(ctx, "alice", tmplCredit); code(err) != wxconfig.CodeSubscribeRefused {
		t.Fatalf("the credit is spent: want 43101, got %v", err)
	}
	for i := 0; i < 3; i++ {
		if err := r.subscribeSend(ctx, "alice", tmplLongTerm); err != nil {
			t.Fatalf("long-term template needs no credit: %v", err)
		}
	}
	if err := r.subscribeSend(ctx, "alice", "no-such-template"); code(err) != wxconfig.CodeInvalidTemplate {
		t.Fatalf("unknown template: want 40037, got %v", err)
	}
	delivered := r.sb.Delivered()
	if len(delivered) != 4 {
		t.Fatalf("delivered %d messages, want 4", len(delivered))
	}
	if all := r.sb.Sent(); len(all) != 7 || all[0].ErrCode != wxconfig.CodeSubscribeRefused {
		t.Fatalf("every attempt is recorded with its errcode: %+v", all)
	}
}

func TestSubscribeFieldRules(t *testing.T) {
	r := newRig(t, coord.NewMemory(), 5*time.Second)
	err := r.wx.DoMP(context.Background(), "subscribe send", func(ctx context.Context) error {
		_, err := r.wx.MP.GetSubscribe().SendGetMsgID(&subscribe.Message{ToUser: "alice", TemplateID: tmplLongTerm,
			Data: map[string]*subscribe.DataItem{"thing1": {Value: strings.Repeat("长", 21)}}})
		return err
	})
	if code(err) != wxconfig.CodeArgumentInvalid {
		t.Fatalf("a thing of 21 characters: want 47003, got %v", err)
	}
}

func TestTemplateSendNeedsFollower(t *testing.T) {
	r := newRig(t, coord.NewMemory(), 5*time.Second)
	send := func(clientMsgID string) (int64, error) {
		var id int64
		err := r.wx.DoOA(context.Background(), "template send", func(ctx context.Context) error {
			var err error
			id, err = r.wx.OA.GetTemplate().Send(&message.TemplateMessage{ToUser: "oa-alice", TemplateID: tmplOA,
				Data: map[string]*message.TemplateDataItem{"first": {Value: "报告已出"}}, ClientMsgID: clientMsgID})
			return err
		})
		return id, err
	}
	if _, err := send(""); code(err) != wxconfig.CodeRequireSubscribe {
		t.Fatalf("not a follower: want 43004, got %v", err)
	}
	r.sb.SetFollower(oaApp, "oa-alice", true, "")
	id1, err := send("n-1")
	if err != nil {
		t.Fatal(err)
	}
	id2, err := send("n-1")
	if err != nil || id1 != id2 {
		t.Fatalf("same client_msg_id: want the same msgid, got %d %d %v", id1, id2, err)
	}
	if n := len(r.sb.Delivered()); n != 1 {
		t.Fatalf("client_msg_id must not deliver twice: %d delivered", n)
	}
}

func TestCustomMessageWindow(t *testing.T) {
	r := newRig(t, coord.NewMemory(), 5*time.Second)
	send := func() error {
		return r.wx.DoOA(context.Background(), "custom send", func(ctx context.Context) error {
			return r.wx.OA.GetCustomerMessageManager().Send(message.NewCustomerTextMessage("oa-bob", "医生已回复"))
		})
	}
	r.sb.SetFollower(oaApp, "oa-bob", true, "")
	if err := send(); code(err) != wxconfig.CodeWindowClosed {
		t.Fatalf("no user message yet: want 45015, got %v", err)
	}
	r.sb.OpenWindow(oaApp, "oa-bob")
	for i := 0; i < 5; i++ {
		if err := send(); err != nil {
			t.Fatalf("reply %d inside the window: %v", i+1, err)
		}
	}
	if err := send(); code(err) != wxconfig.CodeWindowCountUsed {
		t.Fatalf("sixth reply: want 45047, got %v", err)
	}
}

func TestFailurePaths(t *testing.T) {
	r := newRig(t, coord.NewMemory(), 300*time.Millisecond)
	ctx := context.Background()
	var we *wxconfig.Error

	r.sb.FailNext(wxsandbox.APISubscribeSend, 1, wxsandbox.Fault{ErrCode: wxsandbox.CodeBusy})
	err := r.subscribeSend(ctx, "alice", tmplLongTerm)
	if !errors.As(err, &we) || we.Code != -1 || we.Outcome() != wxconfig.OutcomeRetry {
		t.Fatalf("system busy: want retryable -1, got %v", err)
	}

	r.sb.FailNext(wxsandbox.APISubscribeSend, 1, wxsandbox.Fault{HTTPStatus: 502})
	err = r.subscribeSend(ctx, "alice", tmplLongTerm)
	if !errors.As(err, &we) || we.HTTPStatus != 502 || we.Outcome() != wxconfig.OutcomeRetry {
		t.Fatalf("502: want retryable http status, got %v", err)
	}
	if strings.Contains(err.Error(), "access_token") || strings.Contains(err.Error(), "sbx_") {
		t.Fatalf("error text leaks the token: %v", err)
	}

	r.sb.FailNext(wxsandbox.APISubscribeSend, 1, wxsandbox.Fault{Delay: time.Second})
	err = r.subscribeSend(ctx, "alice", tmplLongTerm)
	if !errors.As(err, &we) || !we.Unknown {
		t.Fatalf("timeout after sending: want unknown outcome, got %v", err)
	}

	r.sb.SetQuota(wxsandbox.APISubscribeSend, 1)
	_ = r.subscribeSend(ctx, "alice", tmplLongTerm)
	if err := r.subscribeSend(ctx, "alice", tmplLongTerm); code(err) != wxconfig.CodeDailyQuota {
		t.Fatalf("over the daily quota: want 45009, got %v", err)
	}
	r.sb.SetQuota(wxsandbox.APISubscribeSend, 0)

	r.sb.FailNext(wxsandbox.APISubscribeSend, 1, wxsandbox.Fault{ErrCode: wxsandbox.CodeMinuteQuota})
	if err := r.subscribeSend(ctx, "alice", tmplLongTerm); code(err) != wxconfig.CodeMinuteQuota {
		t.Fatalf("minute quota: want 45011, got %v", err)
	}
}

func TestTokenRefusedIsRefreshedOnceAndRetried(t *testing.T) {
	r := newRig(t, coord.NewMemory(), 5*time.Second)
	ctx := context.Background()
	if err := r.subscribeSend(ctx, "alice", tmplLongTerm); err != nil {
		t.Fatal(err)
	}
	if n := r.sb.TokenFetches(); n != 1 {
		t.Fatalf("first send fetched the token %d times, want 1", n)
	}
	// WeChat answers 40001 once: exactly one refresh and a successful retry.
	r.sb.FailNext(wxsandbox.APISubscribeSend, 1, wxsandbox.Fault{ErrCode: wxsandbox.CodeInvalidCredential})
	if err := r.subscribeSend(ctx, "alice", tmplLongTerm); err != nil {
		t.Fatalf("retry after 40001: %v", err)
	}
	if n := r.sb.TokenFetches(); n != 2 {
		t.Fatalf("after one 40001: %d token fetches, want 2", n)
	}
	// The token really expires (42001): refreshed and retried.
	r.sb.ExpireTokens(mpApp)
	if err := r.subscribeSend(ctx, "alice", tmplLongTerm); err != nil {
		t.Fatalf("retry after 42001: %v", err)
	}
	if n := r.sb.TokenFetches(); n != 3 {
		t.Fatalf("after expiry: %d token fetches, want 3", n)
	}
	// A token refused twice in a row: one retry only, then the error.
	r.sb.FailNext(wxsandbox.APISubscribeSend, 2, wxsandbox.Fault{ErrCode: wxsandbox.CodeInvalidCredential})
	if err := r.subscribeSend(ctx, "alice", tmplLongTerm); code(err) != wxsandbox.CodeInvalidCredential {
		t.Fatalf("refused twice: want 40001 back, got %v", err)
	}
	if n := r.sb.Calls(wxsandbox.APISubscribeSend); n != 7 {
		t.Fatalf("subscribe send calls = %d, want 7 (1 + 2 + 2 + 2)", n)
	}
}

func TestWrongSecretIsNotRetried(t *testing.T) {
	r := newRig(t, coord.NewMemory(), 5*time.Second)
	hc, _ := wxconfig.NewHTTPClient(5*time.Second, r.url, nil)
	bad := wxconfig.New(wxconfig.Config{MPAppID: mpApp, MPSecret: "wrong", OAAppID: oaApp, OASecret: oaSecret},
		coord.NewMemory(), hc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	_, err := bad.PhoneNumber(context.Background(), "dev:13800138000")
	if code(err) != wxsandbox.CodeInvalidCredential {
		t.Fatalf("wrong secret: want 40001 from the token fetch, got %v", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Fatalf("error text leaks the secret: %v", err)
	}
	if n := r.sb.TokenFetches(); n != 1 {
		t.Fatalf("a wrong secret is fetched %d times, want 1 (no retry)", n)
	}
}

// Two instances (two token sources over one Redis) racing for the token
// fetch it once between them.
func TestTokenSharedAcrossInstancesThroughRedis(t *testing.T) {
	store := testenv.Redis(t)
	r := newRig(t, store, 5*time.Second)
	hc, _ := wxconfig.NewHTTPClient(5*time.Second, r.url, nil)
	// A second connection on the same keys: another instance.
	second, _ := coord.NewRedis(testenv.RedisAddr(), store.Prefix())
	t.Cleanup(func() { _ = second.Close() })
	b := wxconfig.New(wxconfig.Config{MPAppID: mpApp, MPSecret: mpSecret, OAAppID: oaApp, OASecret: oaSecret},
		second, hc, slog.New(slog.NewTextHandler(io.Discard, nil)))

	var wg sync.WaitGroup
	toks := make(chan string, 40)
	for i := 0; i < 20; i++ {
		for _, ts := range []*wxconfig.TokenSource{r.wx.MPToken, b.MPToken} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tok, err := ts.GetAccessTokenContext(context.Background())
				if err != nil {
					t.Error(err)
				}
				toks <- tok
			}()
		}
	}
	wg.Wait()
	close(toks)
	first := ""
	for tok := range toks {
		if first == "" {
			first = tok
		}
		if tok != first {
			t.Fatalf("instances got different tokens: %s vs %s", first, tok)
		}
	}
	if n := r.sb.TokenFetches(); n != 1 {
		t.Fatalf("two instances fetched the token %d times, want 1", n)
	}
	// One instance sees 40001: it evicts; the other uses the refreshed token.
	r.wx.MPToken.Invalidate(context.Background(), first)
	b.MPToken.Invalidate(context.Background(), first) // a late second eviction is a no-op
	if _, err := b.MPToken.GetAccessTokenContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.wx.MPToken.GetAccessTokenContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := r.sb.TokenFetches(); n != 2 {
		t.Fatalf("after one eviction: %d fetches, want 2", n)
	}
}

// Every errcode the callers act on has its outcome; anything else WeChat
// refuses is a bad request, and failures without a code are named by how
// they failed.
func TestOutcomes(t *testing.T) {
	for _, c := range []struct {
		err  *wxconfig.Error
		want wxconfig.Outcome
	}{
		{&wxconfig.Error{Code: -1}, wxconfig.OutcomeRetry},
		{&wxconfig.Error{HTTPStatus: 503}, wxconfig.OutcomeRetry},
		{&wxconfig.Error{Transport: true}, wxconfig.OutcomeRetry},
		{&wxconfig.Error{Transport: true, Unknown: true}, wxconfig.OutcomeUnknown},
		{&wxconfig.Error{Code: 40001}, wxconfig.OutcomeRefreshToken},
		{&wxconfig.Error{Code: 40014}, wxconfig.OutcomeRefreshToken},
		{&wxconfig.Error{Code: 42001}, wxconfig.OutcomeRefreshToken},
		{&wxconfig.Error{Code: 43101}, wxconfig.OutcomeNoCredit},
		{&wxconfig.Error{Code: 43004}, wxconfig.OutcomeNotFollower},
		{&wxconfig.Error{Code: 45015}, wxconfig.OutcomeWindowClosed},
		{&wxconfig.Error{Code: 45047}, wxconfig.OutcomeWindowClosed},
		{&wxconfig.Error{Code: 45009}, wxconfig.OutcomeQuotaHeld},
		{&wxconfig.Error{Code: 45011}, wxconfig.OutcomeMinuteLimit},
		{&wxconfig.Error{Code: 40029}, wxconfig.OutcomeBadCode},
		{&wxconfig.Error{Code: 40163}, wxconfig.OutcomeBadCode},
		{&wxconfig.Error{Code: 40226}, wxconfig.OutcomeBadCode},
		{&wxconfig.Error{Code: 40037}, wxconfig.OutcomeBadRequest},
		{&wxconfig.Error{Code: 47003}, wxconfig.OutcomeBadRequest},
		{&wxconfig.Error{HTTPStatus: 404}, wxconfig.OutcomeBadRequest},
	} {
		if got := c.err.Outcome(); got != c.want {
			t.Errorf("%+v: %q, want %q", *c.err, got, c.want)
		}
		if got := wxconfig.OutcomeOf(fmt.Errorf("send: %w", c.err)); got != c.want {
			t.Errorf("wrapped %+v: %q, want %q", *c.err, got, c.want)
		}
	}
	if wxconfig.OutcomeOf(errors.New("not wechat")) != wxconfig.OutcomeNone {
		t.Error("a non-WeChat error has an outcome")
	}
}
