package app_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"careloop/app"
	"careloop/wxsandbox"
)

// What patients and staff write is sealed at rest: marked values written
// through the API (a chat message and its preview, an official-account
// message, a complaint with its resolution and reply, an interpretation
// request and the interpretation, the notices they cause) appear nowhere in
// the raw SQLite file and its WAL, nor in a MariaDB dump.
func TestWrittenTextsAreSealedAtRest(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		duringWork(a)
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		doc, _ := newDoctor(t, a, admin, "dr_seal", "内科")
		mkt := newStaff(t, a, admin, "mkt_seal", "marketing")
		tok, _ := login(t, h, "dev:sealed")
		const (
			chatMark      = "MARKERCHAT甲状腺结节"
			oaMark        = "MARKEROA乳腺增生"
			complaintMark = "MARKERCOMPLAINT护士态度"
			resolveMark   = "MARKERRESOLVE培训"
			replyMark     = "MARKERREPLY致歉"
			questionMark  = "MARKERQUESTION要复查吗"
			interpMark    = "MARKERINTERP一周后复查"
			doctorMark    = "MARKERDOCTOR多喝水"
			pdfMark       = "MARKERPDF"
			imageMark     = "MARKERIMAGE"
		)
		_, cv := startChat(t, a, tok, map[string]any{"topic": "报告解读"})
		cid := uint64(cv["id"].(float64))
		if r := call(t, h, "POST", fmt.Sprintf("/api/mp/conversations/%d/messages", cid), tok, map[string]any{"content": chatMark}); r.Status != 201 {
			t.Fatalf("message: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/conversations/%d/messages", cid), doc, map[string]any{"content": doctorMark}); r.Status != 201 {
			t.Fatalf("reply: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", "/sandbox/wechat/oa/user-message", "", map[string]any{"openid": wxsandbox.OAOpenID("sealed"), "content": oaMark}); r.Status != 200 {
			t.Fatalf("oa message: %d %s", r.Status, r.Raw)
		}
		c := call(t, h, "POST", "/api/mp/complaints", tok, map[string]any{"category": "service_attitude", "content": complaintMark})
		id := uint64(c.Body["id"].(float64))
		step := func(tk string, body map[string]any) {
			if r := call(t, h, "POST", fmt.Sprintf("/api/admin/complaints/%d/steps", id), tk, body); r.Status != 200 {
				t.Fatalf("%v: %d %s", body["to"], r.Status, r.Raw)
			}
		}
		step(mkt, map[string]any{"to": "assigned", "department": "前台"})
		step(mkt, map[string]any{"to": "investigating", "note": "调取监控"})
		step(mkt, map[string]any{"to": "proposed", "resolution": resolveMark})
		step(admin, map[string]any{"to": "approved"})
		step(mkt, map[string]any{"to": "replied", "reply": replyMark})
		b := bookToday(t, a, patientID(t, a, "sealed"), "05:10")
		body := reportBody("R-SEAL", b.Code, "", "12.0", false, false)
		var payload map[string]any
		_ = jsonUnmarshal(body, &payload)
		pdf := []byte("%PDF-1.4 " + pdfMark + strings.Repeat(" 体检报告", 20000)) // several frames
		payload["pdf_base64"] = base64.StdEncoding.EncodeToString(pdf)
		body = []byte(jsonOf(payload))
		rep := ingest(t, h, "peis", peisSecret, time.Now(), body)
		rid := uint64(rep.Body["id"].(float64))
		if r := call(t, h, "POST", fmt.Sprintf("/api/mp/reports/%d/interpretation-request", rid), tok, map[string]string{"question": questionMark}); r.Status != 202 {
			t.Fatalf("ask: %d %s", r.Status, r.Raw)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/admin/reports/%d/interpretation", rid), doc, map[string]string{"text": interpMark}); r.Status != 200 {
			t.Fatalf("interpret: %d %s", r.Status, r.Raw)
		}
		png := append([]byte("\x89PNG\r\n\x1a\n"+imageMark), make([]byte, 64)...)
		code, ref := uploadImage(t, a, tok, png)
		if code != 201 {
			t.Fatalf("upload: %d", code)
		}
		if r := call(t, h, "POST", fmt.Sprintf("/api/mp/conversations/%d/messages", cid), tok, map[string]any{"kind": "image", "content": ref}); r.Status != 201 {
			t.Fatalf("image: %d %s", r.Status, r.Raw)
		}
		rec := httptest.NewRecorder()
		rq := httptest.NewRequest("GET", "/api/mp/chat/images/"+strings.TrimPrefix(ref, "chat/images/"), nil)
		rq.Header.Set("Authorization", "Bearer "+tok)
		h.ServeHTTP(rec, rq)
		if !bytes.Equal(rec.Body.Bytes(), png) {
			t.Fatalf("the image does not read back: %d, %d bytes", rec.Code, rec.Body.Len())
		}
		link := call(t, h, "GET", fmt.Sprintf("/api/mp/reports/%d/pdf-url", rid), tok, nil)
		if got := call(t, h, "GET", link.Body["url"].(string), "", nil); !bytes.Equal(got.Raw, pdf) {
			t.Fatalf("the PDF does not read back: %d, %d bytes of %d", got.Status, len(got.Raw), len(pdf))
		}
		// What the API answers is readable.
		if m := call(t, h, "GET", fmt.Sprintf("/api/mp/conversations/%d/messages", cid), tok, nil); !strings.Contains(string(m.Raw), chatMark) {
			t.Fatalf("the patient cannot read their message: %s", m.Raw)
		}
		var raw []byte
		if a.DB.Dialect() == "mysql" {
			dsn := a.Cfg.MySQLDSN
			dbName := dsn[strings.LastIndex(dsn, "/")+1:]
			if i := strings.Index(dbName, "?"); i >= 0 {
				dbName = dbName[:i]
			}
			out, err := exec.Command("mysqldump", "-h127.0.0.1", "-uroot", "--skip-extended-insert", dbName).Output()
			if err != nil {
				t.Skipf("mysqldump: %v", err)
			}
			raw = out
		} else {
			for _, f := range []string{"careloop.db", "careloop.db-wal"} {
				b, _ := os.ReadFile(filepath.Join(a.Cfg.DataDir, f))
				raw = append(raw, b...)
			}
			_ = filepath.WalkDir(filepath.Join(a.Cfg.DataDir, "files"), func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() {
					b, _ := os.ReadFile(p)
					raw = append(raw, b...)
				}
				return nil
			})
			if len(raw) == 0 {
				t.Fatal("no database file read")
			}
		}
		for _, mark := range []string{chatMark, oaMark, complaintMark, resolveMark, replyMark, questionMark, interpMark, doctorMark, pdfMark, imageMark} {
			if bytes.Contains(raw, []byte(mark)) {
				t.Errorf("%q is stored in clear (%s)", mark, a.DB.Dialect())
			}
		}
	})
}

func patientID(t *testing.T, a *app.App, openID string) uint64 {
	t.Helper()
	var id uint64
	a.DB.Gorm().Table("patients").Where("open_id = ?", openID).Pluck("id", &id)
	if id == 0 {
		t.Fatalf("no patient %s", openID)
	}
	return id
}
