package app_test

import (
	"bytes"
	"context"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"careloop/app"
	"careloop/model"
	"careloop/service"
	"careloop/tabular"
)

// upload posts a file as the console does (multipart, field "file").
func upload(t *testing.T, h http.Handler, token, name string, data []byte) response {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, _ := mw.CreateFormFile("file", name)
	_, _ = fw.Write(data)
	_ = mw.Close()
	req := httptest.NewRequest("POST", "/api/admin/imports", &body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := response{Status: rec.Code, Raw: rec.Body.Bytes(), Header: rec.Header()}
	_ = jsonUnmarshal(res.Raw, &res.Body)
	return res
}

// hisWorkbook is a HIS export of n patients; every 100th row has a bad phone.
func hisWorkbook(t *testing.T, n int, prefix string) []byte {
	t.Helper()
	i := 0
	var buf bytes.Buffer
	err := tabular.WriteXLSX(&buf, "患者", func() ([]any, bool) {
		defer func() { i++ }()
		switch {
		case i == 0:
			return []any{"姓名", "HIS号", "手机号", "性别"}, true
		case i > n:
			return nil, false
		case i%100 == 0:
			return []any{fmt.Sprintf("患者%d", i), fmt.Sprintf("%s%06d", prefix, i), "12345", "女"}, true
		}
		return []any{fmt.Sprintf("患者%d", i), fmt.Sprintf("%s%06d", prefix, i), fmt.Sprintf("139%08d", i), "男"}, true
	})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// waitJob polls the job until it ends and returns what was seen.
func waitJob(t *testing.T, h http.Handler, token string, id uint64) (last map[string]any, percents []float64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		r := call(t, h, "GET", fmt.Sprintf("/api/admin/imports/%d", id), token, nil)
		if r.Status != 200 {
			t.Fatalf("job: %d %s", r.Status, r.Raw)
		}
		percents = append(percents, r.Body["percent"].(float64))
		if s := r.Body["status"]; s == "done" || s == "failed" {
			return r.Body, percents
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the import did not end")
	return nil, nil
}

// An admin uploads a HIS workbook: the answer comes at once, the job's
// progress moves to 100%, the patients are in, the refused rows download as
// CSV, the upload itself is gone; the same file again changes nothing.
func TestImportJobs(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		h := a.Router
		admin := staffLogin(t, h, app.DemoAdminUser, app.DemoAdminPassword)
		desk := newStaff(t, a, admin, "desk", "frontdesk")
		book := hisWorkbook(t, 3000, "H")
		if r := upload(t, h, desk, "his.xlsx", book); r.Status != 403 {
			t.Fatalf("front desk uploads: %d", r.Status)
		}
		if r := upload(t, h, admin, "his.txt", []byte("x")); r.Status != 422 || r.ErrCode() != "unsupported_file" {
			t.Fatalf("a text file: %d %s", r.Status, r.Raw)
		}
		r := upload(t, h, admin, "his.xlsx", book)
		if r.Status != 202 || r.Body["status"] != "queued" || r.Body["file_name"] != "his.xlsx" {
			t.Fatalf("upload: %d %s", r.Status, r.Raw)
		}
		id := uint64(r.Body["id"].(float64))
		job, percents := waitJob(t, h, admin, id)
		if job["status"] != "done" || job["percent"].(float64) != 100 || job["total"].(float64) != 3000 ||
			job["created"].(float64) != 2970 || job["rejected"].(float64) != 30 || job["has_rejected"] != true {
			t.Fatalf("the finished job: %v", job)
		}
		for i := 1; i < len(percents); i++ {
			if percents[i] < percents[i-1] {
				t.Fatalf("progress went back: %v", percents)
			}
		}
		if n, _ := model.Count(a.DB.Gorm().Model(&model.Patient{}).Where("his_id LIKE ?", "H%")); n != 2970 {
			t.Fatalf("patients imported: %d", n)
		}
		csv := call(t, h, "GET", fmt.Sprintf("/api/admin/imports/%d/rejected.csv", id), admin, nil)
		lines := strings.Split(strings.TrimSpace(strings.TrimPrefix(string(csv.Raw), "\ufeff")), "\n")
		if csv.Status != 200 || len(lines) != 31 || !strings.HasPrefix(lines[1], "101,phone,") || !strings.Contains(csv.Header.Get("Content-Disposition"), "filename*=UTF-8''his") {
			t.Fatalf("rejected rows: %d %q", csv.Status, lines[:min(3, len(lines))])
		}
		var j model.ImportJob
		a.DB.Gorm().Where("id = ?", id).Take(&j)
		if rc, err := app.Files(a.Cfg, a.DB, a.Sealer).Open(context.Background(), j.FileKey); err == nil {
			rc.Close()
			t.Fatal("the upload is still stored after the job ended")
		}
		// The same file again: nothing changes.
		again := upload(t, h, admin, "his.xlsx", book)
		job, _ = waitJob(t, h, admin, uint64(again.Body["id"].(float64)))
		if job["created"].(float64) != 0 || job["updated"].(float64) != 0 || job["unchanged"].(float64) != 2970 {
			t.Fatalf("the same file again: %v", job)
		}
		list := call(t, h, "GET", "/api/admin/imports?limit=1", admin, nil)
		if items := list.Body["items"].([]any); len(items) != 1 || list.Body["next_cursor"] == "" {
			t.Fatalf("list: %s", list.Raw)
		}
	})
}

// A job whose worker died (its lease ran out) is taken over and finished
// by another; an unreadable file fails with a reason the uploader reads.
func TestImportJobTakenOverAndFailures(t *testing.T) {
	a := newApp(t, "sqlite", nil)
	ctx := context.Background()
	im := service.NewImports(a.DB, app.Files(a.Cfg, a.DB, a.Sealer), service.NewImporter(a.DB, a.Sealer, nil), service.NewAudit(a.DB), t.TempDir(), nil, nil)
	admin := service.Principal{Kind: model.SubjectStaff, ID: 1, Role: model.RoleAdmin}
	j, err := im.Start(ctx, admin, "dead.xlsx", hisWorkbook(t, 50, "D"))
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Minute).UTC()
	a.DB.Gorm().Model(&model.ImportJob{}).Where("id = ?", j.ID).Updates(map[string]any{"status": model.ImportRunning, "claim_token": "dead-worker", "lease_until": past, "done": 20, "attempts": 1})
	if did, err := im.RunOnce(ctx); !did || err != nil {
		t.Fatalf("take over: %v %v", did, err)
	}
	got, _ := im.Get(ctx, admin, j.ID)
	if got.Status != model.ImportDone || got.Created != 50 || got.Attempts != 2 {
		t.Fatalf("the job taken over: %+v", got)
	}
	bad, err := im.Start(ctx, admin, "broken.xlsx", []byte("not a workbook"))
	if err != nil {
		t.Fatal(err)
	}
	if did, err := im.RunOnce(ctx); !did || err != nil {
		t.Fatalf("run: %v %v", did, err)
	}
	got, _ = im.Get(ctx, admin, bad.ID)
	if got.Status != model.ImportFailed || !strings.Contains(got.LastError, "文件无法读取") {
		t.Fatalf("an unreadable file: %+v", got)
	}
	if did, _ := im.RunOnce(ctx); did {
		t.Fatal("a job left to run")
	}
}

// Workers racing for one queued job: exactly one claims and runs it.
func TestImportJobClaimedOnce(t *testing.T) {
	forEachBackend(t, nil, func(t *testing.T, a *app.App) {
		ctx := context.Background()
		files := app.Files(a.Cfg, a.DB, a.Sealer)
		worker := func() *service.Imports {
			return service.NewImports(a.DB, files, service.NewImporter(a.DB, a.Sealer, nil), service.NewAudit(a.DB), t.TempDir(), nil, nil)
		}
		admin := service.Principal{Kind: model.SubjectStaff, ID: 1, Role: model.RoleAdmin}
		j, err := worker().Start(ctx, admin, "race.xlsx", hisWorkbook(t, 200, "R"))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 4 {
			w := worker()
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if _, err := w.RunOnce(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
		close(start)
		wg.Wait()
		got, _ := worker().Get(ctx, admin, j.ID)
		var runs int64
		a.DB.Gorm().Model(&model.AuditLog{}).Where("action = ? AND detail LIKE ?", service.AuditImport, "race.xlsx:%").Count(&runs)
		if got.Status != model.ImportDone || got.Attempts != 1 || got.Created != 198 || runs != 1 {
			t.Fatalf("status %s, attempts %d, created %d, runs audited %d", got.Status, got.Attempts, got.Created, runs)
		}
	})
}
