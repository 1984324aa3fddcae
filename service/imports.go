package service

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gorm.io/gorm"

	"careloop/model"
	"careloop/tabular"
)

// MaxImportBytes bounds an uploaded HIS export (a 100,000-row workbook is
// about 5 MB).
const MaxImportBytes = 64 << 20

// Errors of import jobs.
var (
	ErrImportFileType = model.NewError(model.KindRule, "unsupported_file", "只支持 .xlsx 或 .csv 文件")
	ErrImportEmpty    = model.NewError(model.KindRule, "empty_file", "文件为空")
	ErrNoImportErrors = model.NewError(model.KindNotFound, "no_rejected_rows", "该导入没有被拒绝的行")
)

// Imports runs HIS imports uploaded in the console as background jobs: an
// upload is stored sealed and answered at once with its job; a worker (Run)
// claims the job under a lease, imports it batch by batch recording its
// progress, keeps the refused rows as a CSV and deletes the upload. A
// worker that dies leaves its lease to run out, and another starts the job
// again (importing is idempotent).
type Imports struct {
	db       *model.DB
	files    FileStore
	importer *Importer
	audit    *Audit
	tmpDir   string
	log      *slog.Logger
	now      func() time.Time
	wake     doorbell
	// Lease is how long a claim holds without a word from its worker
	// (default 2 minutes; every batch renews it).
	Lease time.Duration
	// Poll is how often Run looks for jobs nobody woke it for (default 2 s).
	Poll time.Duration
}

// NewImports returns the import jobs. tmpDir holds an upload, unsealed,
// while a workbook is read (excelize reads from a file).
func NewImports(db *model.DB, files FileStore, importer *Importer, audit *Audit, tmpDir string, log *slog.Logger, now func() time.Time) *Imports {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	return &Imports{db: db, files: files, importer: importer, audit: audit, tmpDir: tmpDir, log: log, now: now,
		wake: newDoorbell(), Lease: 2 * time.Minute, Poll: 2 * time.Second}
}

// importKind is the table format a file name says.
func importKind(name string) (string, bool) {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".xlsx":
		return ".xlsx", true
	case ".csv":
		return ".csv", true
	}
	return "", false
}

// Start stores an upload and queues its job; Run does the work.
func (s *Imports) Start(ctx context.Context, by Principal, name string, data []byte) (*model.ImportJob, error) {
	if err := by.must(ActPatientsImport); err != nil {
		return nil, err
	}
	ext, ok := importKind(name)
	if !ok {
		return nil, ErrImportFileType
	}
	if len(data) == 0 {
		return nil, ErrImportEmpty
	}
	key := "imports/" + randomHex(12) + ext
	if err := s.files.Put(ctx, key, data); err != nil {
		return nil, fmt.Errorf("store upload %s: %w", name, err)
	}
	job := model.ImportJob{StaffID: by.ID, FileName: model.Truncate(filepath.Base(name), 200), FileKey: key, Status: model.ImportQueued}
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Create(&job).Error; err != nil {
			return err
		}
		return s.audit.Record(ctx, by, AuditImport, nil, "upload "+job.FileName)
	})
	if err != nil {
		_ = s.files.Delete(ctx, key)
		return nil, fmt.Errorf("queue import %s: %w", name, err)
	}
	s.wake.ring()
	return &job, nil
}

// Get returns a job with its progress.
func (s *Imports) Get(ctx context.Context, by Principal, id uint64) (*model.ImportJob, error) {
	if err := by.must(ActPatientsImport); err != nil {
		return nil, err
	}
	var j model.ImportJob
	if err := s.db.Conn(ctx).Where("id = ?", id).Take(&j).Error; err != nil {
		return nil, model.NotFound(err)
	}
	return &j, nil
}

// List returns the jobs newest first, a page at a time.
func (s *Imports) List(ctx context.Context, by Principal, cursor string, limit int) ([]model.ImportJob, string, error) {
	if err := by.must(ActPatientsImport); err != nil {
		return nil, "", err
	}
	return page(s.db.Conn(ctx).Model(&model.ImportJob{}), "id", cursor, limit, func(j model.ImportJob) uint64 { return j.ID })
}

// Rejected opens the CSV of a finished job's refused rows.
func (s *Imports) Rejected(ctx context.Context, by Principal, id uint64) (io.ReadCloser, *model.ImportJob, error) {
	if err := by.must(ActPatientsImport); err != nil {
		return nil, nil, err
	}
	j, err := s.Get(ctx, by, id)
	if err != nil {
		return nil, nil, err
	}
	if j.ErrorsKey == "" {
		return nil, nil, ErrNoImportErrors
	}
	rc, err := s.files.Open(ctx, j.ErrorsKey)
	if err != nil {
		return nil, nil, fmt.Errorf("open rejected rows of import %d: %w", id, err)
	}
	return rc, j, nil
}

// Run works on import jobs until ctx ends: at once when this instance
// queued one, else every Poll.
func (s *Imports) Run(ctx context.Context) error {
	return s.wake.serve(ctx, s.Poll, s.log, "import job", s.RunOnce)
}

// RunOnce claims one job that is queued, or whose worker's lease ran out,
// and runs it to its end. It reports whether there was one.
func (s *Imports) RunOnce(ctx context.Context) (bool, error) {
	now := s.now().UTC()
	var ids []uint64
	if err := s.db.Conn(ctx).Model(&model.ImportJob{}).
		Where("status = ? OR (status = ? AND lease_until < ?)", model.ImportQueued, model.ImportRunning, now).
		Order("id").Limit(1).Pluck("id", &ids).Error; err != nil {
		return false, fmt.Errorf("find import jobs: %w", err)
	}
	if len(ids) == 0 {
		return false, nil
	}
	token := randomHex(16)
	res := s.db.Conn(ctx).Model(&model.ImportJob{}).
		Where("id = ? AND (status = ? OR (status = ? AND lease_until < ?))", ids[0], model.ImportQueued, model.ImportRunning, now).
		Updates(map[string]any{"status": model.ImportRunning, "claim_token": token, "lease_until": now.Add(s.Lease),
			"attempts": gorm.Expr("attempts + 1"), "done": 0})
	if res.Error != nil {
		return false, fmt.Errorf("claim import %d: %w", ids[0], res.Error)
	}
	if res.RowsAffected == 0 {
		return true, nil // another worker took it: look again
	}
	var j model.ImportJob
	if err := s.db.Conn(ctx).Where("id = ?", ids[0]).Take(&j).Error; err != nil {
		return true, err
	}
	s.run(ctx, &j)
	return true, nil
}

// run imports one claimed job and settles it.
func (s *Imports) run(ctx context.Context, j *model.ImportJob) {
	rep, err := s.importFile(ctx, j)
	if ctx.Err() != nil {
		return // stopping: the lease runs out and a worker starts it again
	}
	upd := map[string]any{"claim_token": "", "lease_until": nil, "finished_at": s.now().UTC()}
	if err != nil {
		s.log.Error("import failed", "job", j.ID, "err", err)
		upd["status"], upd["last_error"] = model.ImportFailed, model.Truncate(importFailure(err), 500)
	} else {
		upd["status"], upd["created"], upd["updated"], upd["unchanged"], upd["rejected"] =
			model.ImportDone, rep.Created, rep.Updated, rep.Unchanged, len(rep.Errors)
		upd["done"], upd["total"] = rep.Rows, rep.Rows
		if len(rep.Errors) > 0 {
			key := strings.TrimSuffix(j.FileKey, filepath.Ext(j.FileKey)) + ".errors.csv"
			var buf bytes.Buffer
			werr := WriteImportErrors(&buf, rep.Errors)
			if werr == nil {
				werr = s.files.Put(ctx, key, buf.Bytes())
			}
			if werr != nil {
				// The rows are in; only the list of refused ones is lost.
				s.log.Error("keep refused rows of import", "job", j.ID, "err", werr)
			} else {
				upd["errors_key"] = key
			}
		}
	}
	res := s.db.Conn(ctx).Model(&model.ImportJob{}).Where("id = ? AND claim_token = ?", j.ID, j.ClaimToken).Updates(upd)
	if res.Error != nil {
		s.log.Error("settle import", "job", j.ID, "err", res.Error)
		return
	}
	if res.RowsAffected == 0 {
		// Another worker took the job over (this one was too slow to renew
		// its lease): the job, and its upload, are that worker's now.
		s.log.Warn("import taken over by another worker", "job", j.ID)
		return
	}
	// The upload is patient data: it goes once its rows are in.
	if err := s.files.Delete(ctx, j.FileKey); err != nil {
		s.log.Warn("delete import upload", "job", j.ID, "err", err)
	}
	detail := fmt.Sprintf("%s: failed", j.FileName)
	if rep != nil && err == nil {
		detail = fmt.Sprintf("%s: %d created, %d updated, %d refused", j.FileName, rep.Created, rep.Updated, len(rep.Errors))
	}
	if aerr := s.audit.Record(ctx, Principal{Kind: model.SubjectStaff, ID: j.StaffID, Role: "system"}, AuditImport, nil, detail); aerr != nil {
		s.log.Warn("audit import", "job", j.ID, "err", aerr)
	}
}

// importFailure says in Chinese why a job failed: a file that cannot be
// read is the uploader's to fix; anything else is ours.
func importFailure(err error) string {
	var me *model.Error
	if errors.As(err, &me) {
		return me.Message
	}
	if errors.Is(err, errUnreadable) {
		return "文件无法读取，请确认是有效的 .xlsx 或 UTF-8 编码的 .csv 文件"
	}
	return "导入时发生内部错误，请稍后重试"
}

var errUnreadable = errors.New("unreadable table")

// importFile unseals the upload to a private temporary file, reads it as a
// table and imports it, recording progress (and renewing the lease) after
// every batch.
func (s *Imports) importFile(ctx context.Context, j *model.ImportJob) (*ImportReport, error) {
	rc, err := s.files.Open(ctx, j.FileKey)
	if err != nil {
		return nil, fmt.Errorf("open upload: %w", err)
	}
	defer rc.Close()
	if err := os.MkdirAll(s.tmpDir, 0o700); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(s.tmpDir, "import-*"+filepath.Ext(j.FileKey))
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, rc); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("unseal upload: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	rows, err := tabular.Open(tmp.Name())
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errUnreadable, err)
	}
	defer rows.Close()
	if t := rows.Total(); t > 0 {
		if err := s.db.Conn(ctx).Model(&model.ImportJob{}).Where("id = ? AND claim_token = ?", j.ID, j.ClaimToken).
			Update("total", t-1).Error; err != nil {
			return nil, err
		}
	}
	var lost error
	rep, err := s.importer.ImportFrom(ctx, rows, func(done, total int) {
		upd := map[string]any{"done": done, "lease_until": s.now().UTC().Add(s.Lease)}
		if total > 0 {
			upd["total"] = max(total-1, done)
		}
		res := s.db.Conn(ctx).Model(&model.ImportJob{}).Where("id = ? AND claim_token = ?", j.ID, j.ClaimToken).Updates(upd)
		if res.Error == nil && res.RowsAffected == 0 {
			lost = errors.New("the claim was taken over")
		}
	})
	if err == nil && lost != nil {
		err = lost
	}
	return rep, err
}

// WriteImportErrors writes refused rows as CSV that Excel opens (UTF-8 with
// a byte-order mark): row, field, reason.
func WriteImportErrors(w io.Writer, errs []ImportError) error {
	if _, err := w.Write([]byte{0xEF, 0xBB, 0xBF}); err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"行号", "字段", "原因"})
	for _, e := range errs {
		_ = cw.Write([]string{strconv.Itoa(e.Row), e.Field, e.Reason})
	}
	cw.Flush()
	return cw.Error()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
