package service

import (
	"context"
	"encoding/base64"
	"strconv"
	"time"

	"gorm.io/gorm"

	"careloop/model"
)

// Audited actions.
const (
	AuditPatientView    = "patient.view"
	AuditHealthRead     = "patient.health.read"
	AuditIDCardRead     = "patient.id_card.read"
	AuditPatientSearch  = "patient.search"
	AuditPatientBlock   = "patient.block"
	AuditPatientUnblock = "patient.unblock"
	AuditTagAdd         = "patient.tag.add"
	AuditTagRemove      = "patient.tag.remove"
	AuditExport         = "export"
	AuditStaffChange    = "staff.change"
	AuditImport         = "patient.import"
)

// Audit writes and reads the audit log.
type Audit struct {
	db *model.DB
}

// NewAudit returns the audit log.
func NewAudit(db *model.DB) *Audit { return &Audit{db: db} }

// Record writes one entry, inside the caller's transaction when there is one.
func (a *Audit) Record(ctx context.Context, by Principal, action string, patientID *uint64, detail string) error {
	return a.db.Conn(ctx).Create(&model.AuditLog{
		StaffID: by.ID, Role: by.Role, Action: action, PatientID: patientID, Detail: model.Truncate(detail, 500), IP: by.IP,
	}).Error
}

// AuditFilter narrows the audit log.
type AuditFilter struct {
	StaffID   uint64
	PatientID uint64
	Action    string
	From, To  time.Time
	Cursor    string
	Limit     int
}

// List returns entries newest first, with a cursor for the next page.
func (a *Audit) List(ctx context.Context, by Principal, f AuditFilter) ([]model.AuditLog, string, error) {
	if err := by.must(ActAuditRead); err != nil {
		return nil, "", err
	}
	q := a.db.Conn(ctx).Model(&model.AuditLog{})
	if f.StaffID != 0 {
		q = q.Where("staff_id = ?", f.StaffID)
	}
	if f.PatientID != 0 {
		q = q.Where("patient_id = ?", f.PatientID)
	}
	if f.Action != "" {
		q = q.Where("action = ?", f.Action)
	}
	if !f.From.IsZero() {
		q = q.Where("created_at >= ?", f.From.UTC())
	}
	if !f.To.IsZero() {
		q = q.Where("created_at < ?", f.To.UTC())
	}
	return page(q, "id", f.Cursor, f.Limit, func(l model.AuditLog) uint64 { return l.ID })
}

// ErrBadCursor says a pagination cursor was not one we gave out.
var ErrBadCursor = model.NewError(model.KindInvalid, "invalid_cursor", "分页参数无效")

// page runs q ordered by idCol descending, after the cursor, and returns at
// most limit rows with the cursor of the next page ("" at the end).
func page[T any](q *gorm.DB, idCol, cursor string, limit int, id func(T) uint64) ([]T, string, error) {
	if limit <= 0 || limit > 100 {
		limit = 20
	}
	if cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cursor)
		after, err2 := strconv.ParseUint(string(raw), 10, 64)
		if err != nil || err2 != nil {
			return nil, "", ErrBadCursor
		}
		q = q.Where(idCol+" < ?", after)
	}
	var rows []T
	if err := q.Order(idCol + " DESC").Limit(limit + 1).Find(&rows).Error; err != nil {
		return nil, "", err
	}
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatUint(id(rows[limit-1]), 10)))
	}
	return rows, next, nil
}
