package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"careloop/model"
)

// ImportError is one refused row of an import: the row number as the file
// shows it (the header is row 1), the field and the reason, in Chinese for
// the staff who fix the file.
type ImportError struct {
	Row    int
	Field  string
	Reason string
}

// ImportReport counts what an import did.
type ImportReport struct {
	Rows      int
	Created   int
	Updated   int
	Unchanged int
	Errors    []ImportError
}

// Importer loads patients exported from the hospital's HIS. It is
// idempotent: a row is matched by HIS id, else by phone, and importing the
// same file again changes nothing.
type Importer struct {
	db     *model.DB
	sealer *Sealer
	now    func() time.Time
	// BatchSize rows are matched and written per transaction.
	BatchSize int
}

// NewImporter returns the HIS importer.
func NewImporter(db *model.DB, sealer *Sealer, now func() time.Time) *Importer {
	if now == nil {
		now = time.Now
	}
	return &Importer{db: db, sealer: sealer, now: now, BatchSize: 1000}
}

// columns the importer understands, by the header names HIS exports use.
var importColumns = map[string]string{
	"name": "name", "姓名": "name",
	"phone": "phone", "mobile": "phone", "手机号": "phone", "手机": "phone", "联系电话": "phone",
	"gender": "gender", "sex": "gender", "性别": "gender",
	"birth_date": "birth_date", "birthday": "birth_date", "出生日期": "birth_date",
	"his_id": "his_id", "his patient id": "his_id", "his号": "his_id", "病案号": "his_id", "患者编号": "his_id",
	"source": "source", "source_channel": "source", "来源": "source", "来源渠道": "source",
	"id_card": "id_card", "身份证号": "id_card", "身份证": "id_card", "身份证号码": "id_card", "证件号码": "id_card",
}

type importRow struct {
	line                            int
	name, phone, gender, hisID, src string
	birth                           *time.Time
	phoneHash                       string
	idCard                          *model.IDCard
	idHash                          string
}

// RowSource streams a table's rows: Next returns io.EOF after the last.
// A source that knows its size ahead (Total, header included) lets the
// progress report say how far along the import is.
type RowSource interface {
	Next() ([]string, error)
}

type sliceRows struct {
	rows [][]string
	i    int
}

func (s *sliceRows) Next() ([]string, error) {
	if s.i >= len(s.rows) {
		return nil, io.EOF
	}
	s.i++
	return s.rows[s.i-1], nil
}

func (s *sliceRows) Total() int { return len(s.rows) }

// Import imports rows held in memory (the first is the header).
func (im *Importer) Import(ctx context.Context, rows [][]string, progress func(done, total int)) (*ImportReport, error) {
	return im.ImportFrom(ctx, &sliceRows{rows: rows}, progress)
}

// ImportFrom reads rows from src (the first is the header) a batch at a
// time, so a large export is never held whole, and reports progress after
// each batch (total is 0 when src cannot say).
func (im *Importer) ImportFrom(ctx context.Context, src RowSource, progress func(done, total int)) (*ImportReport, error) {
	rep := &ImportReport{}
	head, err := src.Next()
	if errors.Is(err, io.EOF) {
		rep.Errors = append(rep.Errors, ImportError{Row: 1, Field: "表头", Reason: "文件为空"})
		return rep, nil
	}
	if err != nil {
		return rep, fmt.Errorf("read the header: %w", err)
	}
	total := 0
	if t, ok := src.(interface{ Total() int }); ok && t.Total() > 0 {
		total = t.Total() - 1
	}
	col := map[string]int{}
	for i, h := range head {
		if f, ok := importColumns[strings.ToLower(strings.TrimSpace(h))]; ok {
			col[f] = i
		}
	}
	if _, ok := col["name"]; !ok {
		rep.Errors = append(rep.Errors, ImportError{Row: 1, Field: "表头", Reason: "缺少“姓名”列"})
		return rep, nil
	}
	_, hasPhone := col["phone"]
	_, hasHIS := col["his_id"]
	if !hasPhone && !hasHIS {
		rep.Errors = append(rep.Errors, ImportError{Row: 1, Field: "表头", Reason: "需要“HIS号”或“手机号”列之一"})
		return rep, nil
	}
	get := func(r []string, f string) string {
		if i, ok := col[f]; ok && i < len(r) {
			return strings.TrimSpace(r[i])
		}
		return ""
	}
	seenHIS, seenPhone, seenID := map[string]int{}, map[string]int{}, map[string]int{}
	var batch []importRow
	now := im.now()
	for i := 0; ; i++ {
		r, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return rep, fmt.Errorf("read row %d: %w", i+2, err)
		}
		line := i + 2
		if isBlank(r) {
			continue
		}
		rep.Rows++
		row, ierr := im.parseRow(line, r, get, now)
		if ierr == nil && row.hisID != "" {
			if prev, dup := seenHIS[row.hisID]; dup {
				ierr = &ImportError{Row: line, Field: "his_id", Reason: fmt.Sprintf("HIS号与第 %d 行重复", prev)}
			}
		}
		if ierr == nil && row.idHash != "" {
			if prev, dup := seenID[row.idHash]; dup {
				ierr = &ImportError{Row: line, Field: "id_card", Reason: fmt.Sprintf("身份证号与第 %d 行重复", prev)}
			}
		}
		if ierr == nil && row.phone != "" {
			if prev, dup := seenPhone[row.phone]; dup {
				ierr = &ImportError{Row: line, Field: "phone", Reason: fmt.Sprintf("手机号与第 %d 行重复", prev)}
			}
		}
		if ierr != nil {
			rep.Errors = append(rep.Errors, *ierr)
			continue
		}
		if row.hisID != "" {
			seenHIS[row.hisID] = line
		}
		if row.phone != "" {
			seenPhone[row.phone] = line
		}
		if row.idHash != "" {
			seenID[row.idHash] = line
		}
		batch = append(batch, row)
		if len(batch) >= im.BatchSize {
			if err := im.flush(ctx, batch, rep); err != nil {
				return rep, err
			}
			batch = batch[:0]
			if progress != nil {
				progress(i+1, total)
			}
		}
	}
	if err := im.flush(ctx, batch, rep); err != nil {
		return rep, err
	}
	if progress != nil {
		progress(rep.Rows, max(total, rep.Rows))
	}
	return rep, nil
}

func isBlank(r []string) bool {
	for _, c := range r {
		if strings.TrimSpace(c) != "" {
			return false
		}
	}
	return true
}

func (im *Importer) parseRow(line int, r []string, get func([]string, string) string, now time.Time) (importRow, *ImportError) {
	row := importRow{line: line, hisID: get(r, "his_id"), phone: get(r, "phone"), src: get(r, "source")}
	bad := func(field, reason string) (importRow, *ImportError) {
		return row, &ImportError{Row: line, Field: field, Reason: reason}
	}
	name, err := checkName(get(r, "name"))
	if err != nil {
		return bad("name", "姓名为空或超过 32 个字")
	}
	row.name = name
	if v := get(r, "id_card"); v != "" {
		id, err := model.ParseIDCard(v, now)
		if err != nil {
			return bad("id_card", "身份证号不正确（18 位，出生日期与校验码须有效）")
		}
		row.idCard, row.idHash = &id, im.sealer.idCardHash(id.Number)
	}
	if row.hisID == "" && row.phone == "" && row.idCard == nil {
		return bad("his_id", "HIS号、身份证号和手机号至少填一个")
	}
	if len(row.hisID) > 64 {
		return bad("his_id", "HIS号过长")
	}
	if row.phone != "" {
		var ok bool
		if row.phone, ok = cleanPhone(row.phone); !ok {
			return bad("phone", "手机号格式不正确")
		}
		row.phoneHash = im.sealer.Hash(row.phone)
	}
	g, err := ParseGender(get(r, "gender"))
	if err != nil {
		return bad("gender", "性别只能是男、女或留空")
	}
	row.gender = g
	if b := get(r, "birth_date"); b != "" {
		if serial, err := strconv.Atoi(b); err == nil && serial > 0 && serial < 80000 {
			// An Excel date cell: days since 1899-12-30.
			b = time.Date(1899, 12, 30, 0, 0, 0, 0, time.UTC).AddDate(0, 0, serial).Format("2006-01-02")
		}
		d, err := ParseDate(b, now)
		if err != nil {
			return bad("birth_date", "出生日期应为 YYYY-MM-DD 且不晚于今天")
		}
		row.birth = d
	}
	if id := row.idCard; id != nil {
		// The card decides birth date and gender; a column that disagrees is an error in the export.
		if !agrees(*id, row.birth, row.gender) {
			return bad("id_card", "出生日期或性别与身份证号不一致")
		}
		b := id.Birth
		row.birth, row.gender = &b, id.Gender
	}
	row.src = model.Truncate(row.src, 128)
	return row, nil
}

// flush matches a batch against the database and writes it in one
// transaction.
func (im *Importer) flush(ctx context.Context, batch []importRow, rep *ImportReport) error {
	if len(batch) == 0 {
		return nil
	}
	var his, hashes, ids []string
	for _, r := range batch {
		if r.hisID != "" {
			his = append(his, r.hisID)
		}
		if r.idHash != "" {
			ids = append(ids, r.idHash)
		}
		if r.phoneHash != "" {
			hashes = append(hashes, r.phoneHash)
		}
	}
	return im.db.InTx(ctx, func(ctx context.Context) error {
		db := im.db.Conn(ctx)
		var existing []model.Patient
		q := db.Where("1 = 0")
		if len(his) > 0 {
			q = q.Or("his_id IN ?", his)
		}
		if len(hashes) > 0 {
			q = q.Or("phone_hash IN ?", hashes)
		}
		if len(ids) > 0 {
			q = q.Or("id_card_hash IN ?", ids)
		}
		if err := q.Find(&existing).Error; err != nil {
			return fmt.Errorf("match import batch: %w", err)
		}
		byHIS, byPhone, byID := map[string]*model.Patient{}, map[string]*model.Patient{}, map[string]*model.Patient{}
		for i := range existing {
			p := &existing[i]
			if p.IDCardHash != nil {
				byID[*p.IDCardHash] = p
			}
			if p.HISID != nil {
				byHIS[*p.HISID] = p
			}
			if p.PhoneHash != nil {
				byPhone[*p.PhoneHash] = p
			}
		}
		var fresh []model.Patient
		for _, r := range batch {
			// The ID card first, then the HIS id, then the phone.
			p := byID[r.idHash]
			if p == nil && r.idHash != "" {
				if q := byHIS[r.hisID]; r.hisID != "" && q != nil && q.IDCardHash != nil {
					rep.Errors = append(rep.Errors, ImportError{Row: r.line, Field: "id_card", Reason: "该 HIS 号的患者已登记了另一个身份证号"})
					continue
				}
			}
			if p == nil {
				p = byHIS[r.hisID]
			}
			if p == nil {
				if q := byPhone[r.phoneHash]; r.phoneHash != "" && q != nil {
					if r.hisID != "" && q.HISID != nil && *q.HISID != r.hisID {
						rep.Errors = append(rep.Errors, ImportError{Row: r.line, Field: "phone", Reason: "手机号已属于另一位 HIS 号不同的患者"})
						continue
					}
					if r.idHash != "" && q.IDCardHash != nil && *q.IDCardHash != r.idHash {
						rep.Errors = append(rep.Errors, ImportError{Row: r.line, Field: "phone", Reason: "手机号已属于另一位身份证号不同的患者"})
						continue
					}
					p = q
				}
			}
			if p != nil && r.phoneHash != "" && p.PhoneHash != nil && *p.PhoneHash != r.phoneHash {
				if other := byPhone[r.phoneHash]; other != nil && other.ID != p.ID {
					rep.Errors = append(rep.Errors, ImportError{Row: r.line, Field: "phone", Reason: "手机号已属于另一位患者"})
					continue
				}
			}
			if p == nil {
				np := model.Patient{Name: r.name, Gender: r.gender, BirthDate: r.birth, Source: r.src}
				if r.hisID != "" {
					h := r.hisID
					np.HISID = &h
				}
				if r.phoneHash != "" {
					np.PhoneHash, np.PhoneEnc, np.PhoneTail = im.sealer.phoneForms(r.phone)
				}
				if r.idCard != nil {
					np.IDCardHash, np.IDCardEnc, np.IDCardMask = im.sealer.idCardForms(r.idCard.Number)
					np.RegionCode, np.Region = r.idCard.Region, model.RegionName(r.idCard.Region)
				}
				fresh = append(fresh, np)
				continue
			}
			upd := im.changes(p, r)
			if len(upd) == 0 {
				rep.Unchanged++
				continue
			}
			if err := db.Model(&model.Patient{}).Where("id = ?", p.ID).Updates(upd).Error; err != nil {
				if model.IsDuplicate(err) {
					rep.Errors = append(rep.Errors, ImportError{Row: r.line, Field: "phone", Reason: "手机号、HIS 号或身份证号已属于另一位患者"})
					continue
				}
				return fmt.Errorf("update imported patient: %w", err)
			}
			rep.Updated++
		}
		if len(fresh) > 0 {
			if err := db.CreateInBatches(&fresh, 500).Error; err != nil {
				return fmt.Errorf("insert imported patients: %w", err)
			}
			rep.Created += len(fresh)
		}
		return nil
	})
}

// changes lists what a row changes on an existing patient: the HIS's name,
// gender and birth date win; phone, HIS id and source fill only blanks.
func (im *Importer) changes(p *model.Patient, r importRow) map[string]any {
	upd := map[string]any{}
	if r.name != p.Name && p.ErasedAt == nil {
		upd["name"] = r.name
	}
	if r.gender != "unknown" && r.gender != p.Gender {
		upd["gender"] = r.gender
	}
	if r.birth != nil && (p.BirthDate == nil || !sameDay(*p.BirthDate, *r.birth)) {
		upd["birth_date"] = r.birth
	}
	if r.hisID != "" && p.HISID == nil {
		upd["his_id"] = r.hisID
	}
	if r.phoneHash != "" && p.PhoneHash == nil {
		for k, v := range im.sealer.phoneColumns(r.phone) {
			upd[k] = v
		}
	}
	if r.idCard != nil && p.IDCardHash == nil {
		for k, v := range im.sealer.idCardColumns(*r.idCard) {
			upd[k] = v
		}
		if p.RegionCode == "" {
			upd["region_code"], upd["region"] = r.idCard.Region, model.RegionName(r.idCard.Region)
		}
	}
	if r.src != "" && p.Source == "" {
		upd["source"] = r.src
	}
	return upd
}

func sameDay(a, b time.Time) bool {
	return model.DateString(a) == model.DateString(b)
}
