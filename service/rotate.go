package service

import (
	"context"
	"fmt"

	"careloop/model"
)

// sealedColumn is a column holding values sealed by the Sealer, and the
// lookup-hash column computed from the same plaintext (if any).
type sealedColumn struct {
	Model       any
	Table, PK   string
	Column      string
	HashColumn  string
	HashOfPlain func(s *Sealer, plain string) string
}

// SealedColumns are every sealed column, for rotate-key (a new sealed
// column is added here).
func SealedColumns() []sealedColumn {
	phone := func(s *Sealer, p string) string { return s.Hash(p) }
	card := func(s *Sealer, p string) string { return s.idCardHash(p) }
	return []sealedColumn{
		{Model: &model.Patient{}, Table: "patients", PK: "id", Column: "phone_enc", HashColumn: "phone_hash", HashOfPlain: phone},
		{Model: &model.Patient{}, Table: "patients", PK: "id", Column: "id_card_enc", HashColumn: "id_card_hash", HashOfPlain: card},
		{Model: &model.Patient{}, Table: "patients", PK: "id", Column: "retained_enc"},
		{Model: &model.FamilyMember{}, Table: "family_members", PK: "id", Column: "phone_enc", HashColumn: "phone_hash", HashOfPlain: phone},
		{Model: &model.FamilyMember{}, Table: "family_members", PK: "id", Column: "id_card_enc", HashColumn: "id_card_hash", HashOfPlain: card},
		{Model: &model.HealthArchive{}, Table: "health_archives", PK: "patient_id", Column: "data_enc"},
		{Model: &model.ReportVersion{}, Table: "report_versions", PK: "id", Column: "data_enc"},
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
