package service

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"careloop/model"
)

// sealedColumn is a column holding values sealed by the Sealer, and the
// lookup-hash column computed from the same plaintext (if any).
type sealedColumn struct {
	Table, PK string
	Column    string
	// Text: a "sealed" text column (model.SealText), which may still hold
	// plain values from before sealing.
	Text        bool
	HashColumn  string
	HashOfPlain func(s *Sealer, plain string) string
}

// SealedColumns are every sealed column, for rotate-key (a new sealed
// column is added here).
func SealedColumns() []sealedColumn {
	phone := func(s *Sealer, p string) string { return s.Hash(p) }
	card := func(s *Sealer, p string) string { return s.idCardHash(p) }
	return []sealedColumn{
		{Table: "patients", PK: "id", Column: "phone_enc", HashColumn: "phone_hash", HashOfPlain: phone},
		{Table: "patients", PK: "id", Column: "id_card_enc", HashColumn: "id_card_hash", HashOfPlain: card},
		{Table: "patients", PK: "id", Column: "retained_enc"},
		{Table: "family_members", PK: "id", Column: "phone_enc", HashColumn: "phone_hash", HashOfPlain: phone},
		{Table: "family_members", PK: "id", Column: "id_card_enc", HashColumn: "id_card_hash", HashOfPlain: card},
		{Table: "health_archives", PK: "patient_id", Column: "data_enc"},
		{Table: "report_versions", PK: "id", Column: "data_enc"},
		{Table: "chat_messages", PK: "id", Column: "content", Text: true},
		{Table: "conversations", PK: "id", Column: "last_message", Text: true},
		{Table: "oa_events", PK: "id", Column: "content", Text: true},
		{Table: "oa_events", PK: "id", Column: "payload", Text: true},
		{Table: "complaints", PK: "id", Column: "content", Text: true},
		{Table: "complaints", PK: "id", Column: "resolution", Text: true},
		{Table: "complaints", PK: "id", Column: "reply", Text: true},
		{Table: "complaint_steps", PK: "id", Column: "note", Text: true},
		{Table: "tasks", PK: "id", Column: "note", Text: true},
		{Table: "reports", PK: "id", Column: "interpretation", Text: true},
		{Table: "notifications", PK: "id", Column: "params", Text: true},
		{Table: "notifications", PK: "id", Column: "payload", Text: true},
	}
}

// RotateProgress reports a column's progress: rows looked at, rows changed.
type RotateProgress func(table, column string, seen, changed int)

// RotateKeys re-seals, under the current key, every sealed value another
// key sealed, and re-computes lookup hashes with the current hash key — in
// batches by primary key, each row by a conditional update (a write that
// came meanwhile wins and is already current), so it runs beside a live
// service and may be stopped and run again: what is done stays done.
func RotateKeys(ctx context.Context, db *model.DB, s *Sealer, progress RotateProgress) error {
	model.UseSealer(s) // the sealed text columns seal under this ring too
	for _, c := range SealedColumns() {
		var last uint64 // every sealed table's key is a positive integer
		seen, changed := 0, 0
		for {
			type row struct {
				PK    uint64
				Value []byte
				Hash  *string
			}
			sel := fmt.Sprintf("%s AS pk, %s AS value", c.PK, c.Column)
			if c.HashColumn != "" {
				sel += ", " + c.HashColumn + " AS hash"
			}
			q := db.Conn(ctx).Table(c.Table).Select(sel).Where(c.Column+" IS NOT NULL AND "+c.PK+" > ?", last).Order(c.PK).Limit(500)
			var rows []row
			if err := q.Scan(&rows).Error; err != nil {
				return fmt.Errorf("rotate %s.%s: %w", c.Table, c.Column, err)
			}
			if len(rows) == 0 {
				break
			}
			if rows[len(rows)-1].PK <= last {
				return fmt.Errorf("rotate %s.%s: the batch did not advance past %d", c.Table, c.Column, last)
			}
			for _, r := range rows {
				last = r.PK
				seen++
				if len(r.Value) == 0 {
					continue
				}
				if c.Text {
					n, err := rotateText(ctx, db, s, c, r.PK, string(r.Value))
					if err != nil {
						return err
					}
					changed += n
					continue
				}
				plain, err := s.Open(r.Value)
				if err != nil {
					return fmt.Errorf("rotate %s.%s of %v: %w (is its key in CARELOOP_DATA_KEYS?)", c.Table, c.Column, r.PK, err)
				}
				upd := map[string]any{}
				if s.KeyID(r.Value) != s.Current() {
					upd[c.Column] = s.Seal(plain)
				}
				if c.HashColumn != "" {
					if h := c.HashOfPlain(s, string(plain)); r.Hash == nil || *r.Hash != h {
						upd[c.HashColumn] = h
					}
				}
				if len(upd) == 0 {
					continue
				}
				res := db.Conn(ctx).Table(c.Table).Where(c.PK+" = ? AND "+c.Column+" = ?", r.PK, r.Value).Updates(upd)
				if res.Error != nil {
					return fmt.Errorf("rotate %s.%s of %v: %w", c.Table, c.Column, r.PK, res.Error)
				}
				changed += int(res.RowsAffected)
			}
			if progress != nil {
				progress(c.Table, c.Column, seen, changed)
			}
		}
		if progress != nil {
			progress(c.Table, c.Column, seen, changed)
		}
	}
	return nil
}

// rotateText seals a plain value of a sealed text column, or re-seals one
// sealed under another key.
func rotateText(ctx context.Context, db *model.DB, s *Sealer, c sealedColumn, pk uint64, stored string) (int, error) {
	if model.IsSealedText(stored) {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(stored, "s1:"))
		if err == nil && s.KeyID(raw) == s.Current() {
			return 0, nil
		}
	}
	plain, err := model.OpenText(stored)
	if err != nil {
		return 0, fmt.Errorf("rotate %s.%s of %d: %w (is its key in CARELOOP_DATA_KEYS?)", c.Table, c.Column, pk, err)
	}
	res := db.Conn(ctx).Table(c.Table).Where(c.PK+" = ? AND "+c.Column+" = ?", pk, stored).Update(c.Column, model.SealText(plain))
	if res.Error != nil {
		return 0, fmt.Errorf("rotate %s.%s of %d: %w", c.Table, c.Column, pk, res.Error)
	}
	return int(res.RowsAffected), nil
}
