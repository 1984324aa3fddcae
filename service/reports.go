package service

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"

	"careloop/model"
	"careloop/notify"
)

// ErrBadReport says the payload breaks the contract.
var ErrBadReport = model.NewError(model.KindInvalid, "invalid_report", "the report payload does not follow the contract")

// ReportItem is one result line.
type ReportItem struct {
	Code           string `json:"code"`
	Name           string `json:"name"`
	Value          string `json:"value"`
	Unit           string `json:"unit"`
	ReferenceRange string `json:"reference_range"`
	Abnormal       string `json:"abnormal"` // high, low or ""
	Critical       bool   `json:"critical"`
}

// ReportSection groups items (血常规, 肝功能 …).
type ReportSection struct {
	Name  string       `json:"name"`
	Items []ReportItem `json:"items"`
}

// ReportPayload is the contract PEIS vendors implement.
type ReportPayload struct {
	ExternalID      string          `json:"external_id"`
	BookingCode     string          `json:"booking_code"`
	HISPatientID    string          `json:"his_patient_id"`
	Phone           string          `json:"phone"`
	ExamDate        string          `json:"exam_date"`
	Doctor          string          `json:"doctor"`
	Sections        []ReportSection `json:"sections"`
	Conclusions     []string        `json:"conclusions"`
	Recommendations []string        `json:"recommendations"`
	PDFBase64       string          `json:"pdf_base64"`
}

// reportContent is what a version seals.
type reportContent struct {
	Sections        []ReportSection `json:"sections"`
	Conclusions     []string        `json:"conclusions"`
	Recommendations []string        `json:"recommendations"`
}

func bad(format string, args ...any) error {
	return ErrBadReport.WithMessage("invalid report: "+format, args...)
}

// ParseReport decodes and checks a payload strictly.
func ParseReport(body []byte) (*ReportPayload, []byte, error) {
	var p ReportPayload
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, nil, bad("malformed JSON (%s)", model.Truncate(err.Error(), 120))
	}
	if dec.More() {
		return nil, nil, bad("trailing data after the JSON object")
	}
	p.ExternalID = strings.TrimSpace(p.ExternalID)
	if p.ExternalID == "" || len(p.ExternalID) > 64 {
		return nil, nil, bad("external_id is required (at most 64 characters)")
	}
	if p.BookingCode == "" && p.HISPatientID == "" && p.Phone == "" {
		return nil, nil, bad("one of booking_code, his_patient_id, phone is required")
	}
	if _, err := time.Parse(time.DateOnly, p.ExamDate); err != nil {
		return nil, nil, bad("exam_date must be YYYY-MM-DD")
	}
	if len(p.Sections) == 0 || len(p.Sections) > 100 {
		return nil, nil, bad("sections: 1 to 100 expected")
	}
	items := 0
	for si, s := range p.Sections {
		if strings.TrimSpace(s.Name) == "" {
			return nil, nil, bad("sections[%d].name is required", si)
		}
		for ii, it := range s.Items {
			items++
			if strings.TrimSpace(it.Code) == "" || strings.TrimSpace(it.Name) == "" || utf8.RuneCountInString(it.Value) > 200 {
				return nil, nil, bad("sections[%d].items[%d]: code and name are required, value at most 200 characters", si, ii)
			}
			if it.Abnormal != "" && it.Abnormal != "high" && it.Abnormal != "low" {
				return nil, nil, bad("sections[%d].items[%d].abnormal must be high, low or empty", si, ii)
			}
		}
	}
	if items > 2000 {
		return nil, nil, bad("at most 2000 items")
	}
	var pdf []byte
	if p.PDFBase64 != "" {
		var err error
		if pdf, err = base64.StdEncoding.DecodeString(p.PDFBase64); err != nil {
			return nil, nil, bad("pdf_base64 is not base64")
		}
		if !bytes.HasPrefix(pdf, []byte("%PDF-")) {
			return nil, nil, bad("pdf_base64 is not a PDF")
		}
	}
	return &p, pdf, nil
}

// Reports is ingestion, matching, viewing and interpretation of reports.
type Reports struct {
	db     *model.DB
	sealer *Sealer
	files  FileStore
	out    *notify.Outbox
	book   *Bookings
	audit  *Audit
	now    func() time.Time
}

// NewReports returns the report use cases.
func NewReports(db *model.DB, sealer *Sealer, files FileStore, out *notify.Outbox, book *Bookings, audit *Audit, now func() time.Time) *Reports {
	if now == nil {
		now = time.Now
	}
	return &Reports{db: db, sealer: sealer, files: files, out: out, book: book, audit: audit, now: now}
}

// target is who a report belongs to.
type target struct {
	patientID, familyID, bookingID *uint64
	match                          string
}

func (s *Reports) match(ctx context.Context, p *ReportPayload) (target, error) {
	db := s.db.Conn(ctx)
	var t target
	var parts []string
	if p.BookingCode != "" {
		parts = append(parts, "booking_code="+p.BookingCode)
		var b model.Booking
		err := db.Where("code = ?", strings.ToUpper(p.BookingCode)).Take(&b).Error
		if err == nil {
			t.patientID, t.familyID, t.bookingID = &b.PatientID, b.FamilyMemberID, &b.ID
			t.match = strings.Join(parts, " ")
			return t, nil
		}
		if !errors.Is(err, gorm.ErrRecordNotFound) {
			return t, err
		}
	}
	if p.HISPatientID != "" {
		parts = append(parts, "his_id="+p.HISPatientID)
		var pt model.Patient
		err := db.Select("id").Where("his_id = ? AND erased_at IS NULL", p.HISPatientID).Take(&pt).Error
		if err == nil {
			t.patientID = &pt.ID
			t.match = strings.Join(parts, " ")
			return t, nil
		}
		if !errors.Is(err, gorm.ErrRecordNotFound) {
			return t, err
		}
	}
	if p.Phone != "" {
		parts = append(parts, "phone="+MaskPhone(p.Phone))
		var pt model.Patient
		err := db.Select("id").Where("phone_hash = ? AND erased_at IS NULL", s.sealer.Hash(p.Phone)).Take(&pt).Error
		if err == nil {
			t.patientID = &pt.ID
			t.match = strings.Join(parts, " ")
			return t, nil
		}
		if !errors.Is(err, gorm.ErrRecordNotFound) {
			return t, err
		}
	}
	t.match = strings.Join(parts, " ")
	return t, nil
}

// IngestResult says what an ingestion did.
type IngestResult struct {
	Report  model.Report
	Created bool // a new report
	Changed bool // a new version (new report or correction)
	Matched bool
}

// Ingest stores a report from source: idempotent by (source, external_id)
// and content; a corrected report becomes the visible version while the
// earlier ones are kept; an unmatched report waits for staff.
func (s *Reports) Ingest(ctx context.Context, source string, p *ReportPayload, pdf []byte) (*IngestResult, error) {
	if today := s.now().In(model.Shanghai).Format(time.DateOnly); p.ExamDate > today {
		return nil, bad("exam_date %s is in the future (today is %s)", p.ExamDate, today)
	}
	content := reportContent{Sections: p.Sections, Conclusions: p.Conclusions, Recommendations: p.Recommendations}
	plain, _ := json.Marshal(content)
	h := sha256.New()
	h.Write(plain)
	h.Write(pdf)
	fmt.Fprintf(h, "|%s|%s", p.ExamDate, p.Doctor)
	hash := hex.EncodeToString(h.Sum(nil))
	pdfKey := ""
	if len(pdf) > 0 {
		pdfKey = fmt.Sprintf("reports/%x/%s.pdf", sha256.Sum256([]byte(source+"\x00"+p.ExternalID)), hash[:16])
		if err := s.files.Put(ctx, pdfKey, pdf); err != nil {
			return nil, fmt.Errorf("store report pdf: %w", err)
		}
	}
	tg, err := s.match(ctx, p)
	if err != nil {
		return nil, err
	}
	abnormal, critical := 0, false
	for _, sec := range p.Sections {
		for _, it := range sec.Items {
			if it.Abnormal != "" {
				abnormal++
			}
			critical = critical || it.Critical
		}
	}
	sealed := s.sealer.Seal(plain)
	for attempt := 0; ; attempt++ {
		res, err := s.ingestOnce(ctx, source, p, tg, hash, sealed, pdfKey, abnormal, critical)
		if err == nil {
			if res.Changed {
				s.out.Wake(ctx)
			}
			return res, nil
		}
		// A concurrent copy of this report won a unique key: look again.
		if !model.IsDuplicate(err) || attempt >= 3 {
			return nil, err
		}
	}
}

func (s *Reports) ingestOnce(ctx context.Context, source string, p *ReportPayload, tg target, hash string, sealed []byte, pdfKey string, abnormal int, critical bool) (*IngestResult, error) {
	res := &IngestResult{}
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		var r model.Report
		err := db.Where("source = ? AND external_id = ?", source, p.ExternalID).Take(&r).Error
		switch {
		case errors.Is(err, gorm.ErrRecordNotFound):
			r = model.Report{Source: source, ExternalID: p.ExternalID, PatientID: tg.patientID, FamilyMemberID: tg.familyID,
				BookingID: tg.bookingID, ExamDate: p.ExamDate, Doctor: model.Truncate(p.Doctor, 32), Match: model.Truncate(tg.match, 250)}
			if err := db.Create(&r).Error; err != nil {
				return err
			}
			res.Created = true
		case err != nil:
			return err
		}
		var same int64
		if err := db.Model(&model.ReportVersion{}).Where("report_id = ? AND content_hash = ?", r.ID, hash).Count(&same).Error; err != nil {
			return err
		}
		if same > 0 { // a re-send of a version we have
			res.Report, res.Matched = r, r.PatientID != nil
			return nil
		}
		v := model.ReportVersion{ReportID: r.ID, Version: r.Version + 1, ContentHash: hash, DataEnc: sealed, PDFKey: pdfKey}
		if err := db.Create(&v).Error; err != nil {
			return err
		}
		upd := map[string]any{"version": v.Version, "abnormal_count": abnormal, "critical": critical, "exam_date": p.ExamDate, "doctor": model.Truncate(p.Doctor, 32)}
		if r.PatientID == nil && tg.patientID != nil { // a correction that now matches
			upd["patient_id"], upd["family_member_id"], upd["booking_id"] = tg.patientID, tg.familyID, tg.bookingID
			r.PatientID, r.FamilyMemberID, r.BookingID = tg.patientID, tg.familyID, tg.bookingID
		}
		// Guarded by the version read above: a concurrent correction loses.
		q := db.Model(&model.Report{}).Where("id = ? AND version = ?", r.ID, r.Version).Updates(upd)
		if q.Error != nil {
			return q.Error
		}
		if q.RowsAffected == 0 {
			return gorm.ErrDuplicatedKey
		}
		r.Version, r.AbnormalCount, r.Critical = v.Version, abnormal, critical
		res.Report, res.Changed, res.Matched = r, true, r.PatientID != nil
		if r.PatientID != nil {
			return s.afterLink(ctx, &r)
		}
		return nil
	})
	return res, err
}

// afterLink completes the report's booking and writes the patient's "report
// ready" notice (and, for a critical value, the urgent notice and a task for
// the doctors on duty), in the caller's transaction.
func (s *Reports) afterLink(ctx context.Context, r *model.Report) error {
	db := s.db.Conn(ctx)
	var v model.ReportVersion
	if err := db.Where("report_id = ? AND version = ?", r.ID, r.Version).Take(&v).Error; err != nil {
		return fmt.Errorf("report %d version %d: %w", r.ID, r.Version, err)
	}
	plain, err := s.sealer.Open(v.DataEnc)
	if err != nil {
		return fmt.Errorf("open report %d: %w", r.ID, err)
	}
	if err := markReport(ctx, s.db, s.sealer, r, plain); err != nil {
		return err
	}
	if r.BookingID != nil {
		var b model.Booking
		if err := db.Where("id = ?", *r.BookingID).Take(&b).Error; err == nil {
			// A report never completes a booking whose day has not come.
			today := s.now().In(model.Shanghai).Format(time.DateOnly)
			q := db.Model(&model.Booking{}).Where("id = ? AND status IN ? AND date <= ?", b.ID, []string{model.BookingBooked, model.BookingCheckedIn}, today).
				Updates(map[string]any{"status": model.BookingCompleted, "completed_at": s.now().UTC()})
			if q.Error != nil {
				return q.Error
			}
			if q.RowsAffected == 1 {
				if err := s.book.afterTransition(ctx, &b, model.BookingCompleted); err != nil {
					return err
				}
			}
		}
	}
	page := fmt.Sprintf("pages/report/detail?id=%d", r.ID)
	title := "体检报告已出"
	if r.Version > 1 {
		title = "体检报告已更新"
	}
	if _, err := s.out.Enqueue(ctx, notify.Notice{PatientID: *r.PatientID, Reason: notify.ReasonReportReady,
		Occurrence: fmt.Sprintf("report-%d-v%d", r.ID, r.Version), Page: page,
		Params: map[string]string{"title": title, "time": s.now().Format(time.RFC3339), "note": fmt.Sprintf("体检日期 %s", r.ExamDate)}}); err != nil {
		return err
	}
	if !r.Critical {
		return nil
	}
	if _, err := s.out.Enqueue(ctx, notify.Notice{PatientID: *r.PatientID, Reason: notify.ReasonCriticalValue,
		Occurrence: fmt.Sprintf("report-%d", r.ID), Page: page,
		Params: map[string]string{"title": "重要检查结果", "note": "请尽快联系医生或来院复诊"}}); err != nil {
		return err
	}
	rid := r.ID
	if open, err := model.Exists(db.Model(&model.Task{}).Where("kind = ? AND report_id = ?", model.TaskCriticalValue, rid)); err != nil || open {
		return err
	}
	return db.Create(&model.Task{Kind: model.TaskCriticalValue, Role: model.RoleDoctor, Urgent: true, PatientID: *r.PatientID,
		ReportID: &rid, Note: "危急值：请立即联系患者", Status: "open"}).Error
}

// ReportView is a report with its visible content, abnormal items first.
type ReportView struct {
	Report   model.Report
	Content  reportContent
	Abnormal []ReportItem
	HasPDF   bool
}

func (s *Reports) view(ctx context.Context, r *model.Report) (*ReportView, error) {
	var v model.ReportVersion
	if err := s.db.Conn(ctx).Where("report_id = ? AND version = ?", r.ID, r.Version).Take(&v).Error; err != nil {
		return nil, err
	}
	return s.open(r, &v)
}

// open decrypts a version of r into its view.
func (s *Reports) open(r *model.Report, v *model.ReportVersion) (*ReportView, error) {
	plain, err := s.sealer.Open(v.DataEnc)
	if err != nil {
		return nil, err
	}
	out := &ReportView{Report: *r, HasPDF: v.PDFKey != ""}
	if err := json.Unmarshal(plain, &out.Content); err != nil {
		return nil, err
	}
	out.Abnormal = []ReportItem{}
	for _, sec := range out.Content.Sections {
		for _, it := range sec.Items {
			if it.Abnormal != "" || it.Critical {
				out.Abnormal = append(out.Abnormal, it)
			}
		}
	}
	sort.SliceStable(out.Abnormal, func(i, j int) bool { return out.Abnormal[i].Critical && !out.Abnormal[j].Critical })
	return out, nil
}

// Mine lists the caller's reports (their own and their family's).
func (s *Reports) Mine(ctx context.Context, p Principal) ([]model.Report, error) {
	var out []model.Report
	err := s.db.Conn(ctx).Where("patient_id = ?", p.ID).Order("exam_date DESC, id DESC").Limit(200).Find(&out).Error
	return out, err
}

// Get returns one of the caller's reports; anyone else's is not found.
func (s *Reports) Get(ctx context.Context, p Principal, id uint64) (*ReportView, error) {
	var r model.Report
	if err := s.db.Conn(ctx).Where("id = ? AND patient_id = ?", id, p.ID).Take(&r).Error; err != nil {
		return nil, model.NotFound(err)
	}
	return s.view(ctx, &r)
}

// TrendPoint is one value of an item in one report.
type TrendPoint struct {
	ReportID uint64
	ExamDate string
	Item     ReportItem
}

// Trends returns one item's values across the caller's reports (for one
// person: themself, or a family member), oldest first.
func (s *Reports) Trends(ctx context.Context, p Principal, code string, familyID *uint64) ([]TrendPoint, error) {
	q := s.db.Conn(ctx).Where("patient_id = ?", p.ID)
	if familyID != nil {
		q = q.Where("family_member_id = ?", *familyID)
	} else {
		q = q.Where("family_member_id IS NULL")
	}
	var rs []model.Report
	if err := q.Order("exam_date, id").Limit(100).Find(&rs).Error; err != nil {
		return nil, err
	}
	// The visible versions of all of them in one query.
	ids := make([]uint64, len(rs))
	for i := range rs {
		ids[i] = rs[i].ID
	}
	var versions []model.ReportVersion
	if len(ids) > 0 {
		if err := s.db.Conn(ctx).Where("report_id IN ?", ids).Find(&versions).Error; err != nil {
			return nil, err
		}
	}
	visible := map[uint64]*model.ReportVersion{}
	byID := map[uint64]*model.Report{}
	for i := range rs {
		byID[rs[i].ID] = &rs[i]
	}
	for i := range versions {
		if r := byID[versions[i].ReportID]; r != nil && r.Version == versions[i].Version {
			visible[r.ID] = &versions[i]
		}
	}
	out := []TrendPoint{}
	for i := range rs {
		ver := visible[rs[i].ID]
		if ver == nil {
			continue
		}
		v, err := s.open(&rs[i], ver)
		if err != nil {
			return nil, err
		}
		for _, sec := range v.Content.Sections {
			for _, it := range sec.Items {
				if strings.EqualFold(it.Code, code) {
					out = append(out, TrendPoint{ReportID: rs[i].ID, ExamDate: rs[i].ExamDate, Item: it})
				}
			}
		}
	}
	return out, nil
}

// PDF opens the visible version's PDF of report id (no access check: the
// caller checked a signed URL or the owner).
func (s *Reports) PDF(ctx context.Context, id uint64, version int) (io.ReadCloser, error) {
	var v model.ReportVersion
	if err := s.db.Conn(ctx).Where("report_id = ? AND version = ?", id, version).Take(&v).Error; err != nil || v.PDFKey == "" {
		return nil, model.ErrNotFound
	}
	rc, err := s.files.Open(ctx, v.PDFKey)
	if err != nil {
		return nil, model.ErrNotFound
	}
	return rc, nil
}

// StaffGet returns any report to staff, auditing the read.
func (s *Reports) StaffGet(ctx context.Context, by Principal, id uint64) (*ReportView, error) {
	if err := by.must(ActReportsClinical); err != nil {
		return nil, err
	}
	var r model.Report
	// A retained report (its patient erased their account) is sealed.
	if err := s.db.Conn(ctx).Where("id = ? AND retained_until IS NULL", id).Take(&r).Error; err != nil {
		return nil, model.NotFound(err)
	}
	if err := s.audit.Record(ctx, by, "report.read", r.PatientID, fmt.Sprintf("report %d v%d", r.ID, r.Version)); err != nil {
		return nil, err
	}
	return s.view(ctx, &r)
}

// Unmatched lists reports waiting to be linked to a patient.
func (s *Reports) Unmatched(ctx context.Context, by Principal) ([]model.Report, error) {
	if err := by.must(ActReportsLink); err != nil {
		return nil, err
	}
	var out []model.Report
	return out, s.db.Conn(ctx).Where("patient_id IS NULL").Order("id").Limit(500).Find(&out).Error
}

// ErrAlreadyLinked says the report already has its patient.
var ErrAlreadyLinked = model.NewError(model.KindConflict, "already_linked", "该报告已关联患者")

// Link gives an unmatched report its patient (and optionally the family
// member and booking), with the same effects as a matched ingestion.
func (s *Reports) Link(ctx context.Context, by Principal, id, patientID uint64, familyID, bookingID *uint64) (*model.Report, error) {
	if err := by.must(ActReportsLink); err != nil {
		return nil, err
	}
	var r model.Report
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		if err := model.MustExist(db.Model(&model.Patient{}).Where("id = ? AND erased_at IS NULL", patientID), model.ErrNotFound.WithMessage("患者不存在")); err != nil {
			return err
		}
		if familyID != nil {
			if err := model.MustExist(db.Model(&model.FamilyMember{}).Where("id = ? AND owner_id = ?", *familyID, patientID), model.ErrNotFound.WithMessage("就诊人不存在")); err != nil {
				return err
			}
		}
		if bookingID != nil {
			if err := model.MustExist(db.Model(&model.Booking{}).Where("id = ? AND patient_id = ?", *bookingID, patientID), model.ErrNotFound.WithMessage("预约不存在")); err != nil {
				return err
			}
		}
		q := db.Model(&model.Report{}).Where("id = ? AND patient_id IS NULL", id).
			Updates(map[string]any{"patient_id": patientID, "family_member_id": familyID, "booking_id": bookingID})
		if q.Error != nil {
			return q.Error
		}
		if q.RowsAffected == 0 {
			if err := model.MustExist(db.Model(&model.Report{}).Where("id = ?", id), model.ErrNotFound); err != nil {
				return err
			}
			return ErrAlreadyLinked
		}
		if err := db.Where("id = ?", id).Take(&r).Error; err != nil {
			return err
		}
		if err := s.audit.Record(ctx, by, "report.link", &patientID, fmt.Sprintf("report %d", id)); err != nil {
			return err
		}
		return s.afterLink(ctx, &r)
	})
	if err != nil {
		return nil, err
	}
	s.out.Wake(ctx)
	return &r, nil
}

// Interpret records a doctor's interpretation and closes the report's
// open interpretation requests.
func (s *Reports) Interpret(ctx context.Context, by Principal, id uint64, text string) (*model.Report, error) {
	if err := by.must(ActReportsClinical); err != nil {
		return nil, err
	}
	text = strings.TrimSpace(text)
	if text == "" || utf8.RuneCountInString(text) > 4000 {
		return nil, model.ErrInvalid.WithMessage("解读内容不能为空，最多 4000 字")
	}
	now := s.now().UTC()
	var r model.Report
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		q := db.Model(&model.Report{}).Where("id = ? AND patient_id IS NOT NULL", id).
			Updates(map[string]any{"interpretation": model.SealText(text), "interpreted_by": by.ID, "interpreted_at": now})
		if q.Error != nil {
			return q.Error
		}
		if q.RowsAffected == 0 {
			return model.ErrNotFound
		}
		if err := db.Model(&model.Task{}).Where("kind = ? AND report_id = ? AND status = ?", model.TaskInterpretation, id, "open").
			Updates(map[string]any{"status": "done", "done_at": now, "assigned_to": by.ID}).Error; err != nil {
			return err
		}
		if err := db.Where("id = ?", id).Take(&r).Error; err != nil {
			return err
		}
		return s.audit.Record(ctx, by, "report.interpret", r.PatientID, fmt.Sprintf("report %d", id))
	})
	return &r, err
}

// RequestInterpretation opens a task for the doctors (once per report).
func (s *Reports) RequestInterpretation(ctx context.Context, p Principal, id uint64, question string) error {
	var r model.Report
	if err := s.db.Conn(ctx).Where("id = ? AND patient_id = ?", id, p.ID).Take(&r).Error; err != nil {
		return model.NotFound(err)
	}
	if open, err := model.Exists(s.db.Conn(ctx).Model(&model.Task{}).Where("kind = ? AND report_id = ? AND status = ?", model.TaskInterpretation, id, "open")); err != nil || open {
		return err
	}
	rid := r.ID
	return s.db.Conn(ctx).Create(&model.Task{Kind: model.TaskInterpretation, Role: model.RoleDoctor, PatientID: p.ID, ReportID: &rid,
		Note: model.Truncate(strings.TrimSpace(question), 500), Status: "open"}).Error
}
