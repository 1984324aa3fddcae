// Package tabular reads the tables hospitals hand us (a HIS export as CSV
// or an Excel workbook) as a stream of rows, and writes the tables staff
// download, through excelize for Excel: shared and inline strings, dates,
// several sheets, and rows streamed so a 100,000-row export is never held
// whole.
package tabular

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/xuri/excelize/v2"
)

// Rows is a table read row by row.
type Rows struct {
	next  func() ([]string, error)
	close func() error
	total int
	line  int
}

// Next returns the next row, or io.EOF after the last.
func (r *Rows) Next() ([]string, error) {
	row, err := r.next()
	if err == nil {
		r.line++
	}
	return row, err
}

// Total is how many rows the file holds, header included, as known before
// reading them (0 when it is not).
func (r *Rows) Total() int { return r.total }

// Close releases the file.
func (r *Rows) Close() error {
	if r.close == nil {
		return nil
	}
	return r.close()
}

// Open reads the file at p by its extension: CSV (UTF-8, with or without
// a byte-order mark) or an Excel workbook (.xlsx). In a workbook the first
// sheet is the table; a later sheet whose first row is the same header
// continues it (an export split in parts), any other sheet (notes) is
// left out.
func Open(p string) (*Rows, error) {
	switch strings.ToLower(path.Ext(p)) {
	case ".xlsx":
		return openXLSX(p)
	case ".csv", ".txt":
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		total, err := countLines(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("read csv: %w", err)
		}
		rows, err := CSV(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		rows.total, rows.close = total, f.Close
		return rows, nil
	}
	return nil, fmt.Errorf("%s: only .csv and .xlsx files can be imported", p)
}

// countLines counts the lines of f (a bound for its rows: a quoted cell may
// hold a line break) and rewinds it.
func countLines(f *os.File) (int, error) {
	buf := make([]byte, 64<<10)
	n, last := 0, byte('\n')
	for {
		k, err := f.Read(buf)
		n += bytes.Count(buf[:k], []byte{'\n'})
		if k > 0 {
			last = buf[k-1]
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	if last != '\n' {
		n++
	}
	_, err := f.Seek(0, io.SeekStart)
	return n, err
}

// CSV reads CSV from r, dropping a UTF-8 byte-order mark.
func CSV(r io.Reader) (*Rows, error) {
	br := bufio.NewReader(r)
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, []byte{0xEF, 0xBB, 0xBF}) {
		_, _ = br.Discard(3)
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = false
	rows := &Rows{}
	rows.next = func() ([]string, error) {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if err != nil {
			return nil, fmt.Errorf("read csv: %w", err)
		}
		for _, cell := range rec {
			if !utf8.ValidString(cell) {
				return nil, fmt.Errorf("read csv line %d: the file is not UTF-8 (save it from Excel as \"CSV UTF-8\")", rows.line+1)
			}
		}
		return rec, nil
	}
	return rows, nil
}

// openXLSX streams the table's sheets. Cells come as stored (a date as its
// serial number, a long number without rounding), so that nothing depends
// on how the cell happened to be formatted.
func openXLSX(p string) (*Rows, error) {
	f, err := excelize.OpenFile(p)
	if err != nil {
		return nil, fmt.Errorf("open xlsx: %w", err)
	}
	sheets := f.GetSheetList()
	if len(sheets) == 0 {
		f.Close()
		return nil, errors.New("open xlsx: the workbook has no sheet")
	}
	header, err := firstRow(f, sheets[0])
	if err != nil {
		f.Close()
		return nil, err
	}
	table := sheets[:1]
	for _, s := range sheets[1:] {
		if first, err := firstRow(f, s); err == nil && len(header) > 0 && slices.Equal(first, header) {
			table = append(table, s)
		}
	}
	// The sheets' dimensions give the size ahead, when each has one (Excel
	// writes them; some tools write "A1" or nothing): else the rows are
	// counted in a first pass, so that progress can be told.
	total := 0
	for _, s := range table {
		n := sheetRows(f, s)
		if n == 0 {
			if n, err = countRows(f, s); err != nil {
				f.Close()
				return nil, err
			}
		}
		total += n
	}
	if total > 0 {
		total -= len(table) - 1 // the later sheets' headers
	}
	sheets = table
	var (
		cur   *excelize.Rows
		sheet int
		first = true
	)
	closeCur := func() {
		if cur != nil {
			_ = cur.Close()
			cur = nil
		}
	}
	rows := &Rows{total: total}
	rows.close = func() error {
		closeCur()
		return f.Close()
	}
	rows.next = func() ([]string, error) {
		for {
			if cur == nil {
				if sheet >= len(sheets) {
					return nil, io.EOF
				}
				if cur, err = f.Rows(sheets[sheet]); err != nil {
					return nil, fmt.Errorf("read xlsx sheet %q: %w", sheets[sheet], err)
				}
				sheet++
				if !first && !cur.Next() { // a later sheet's header: the table's already
					closeCur()
					continue
				}
				first = false
			}
			if !cur.Next() {
				err := cur.Error()
				closeCur()
				if err != nil {
					return nil, fmt.Errorf("read xlsx: %w", err)
				}
				continue
			}
			row, err := cur.Columns(excelize.Options{RawCellValue: true})
			if err != nil {
				return nil, fmt.Errorf("read xlsx row %d: %w", rows.line+1, err)
			}
			return row, nil
		}
	}
	return rows, nil
}

// firstRow is a sheet's first row, without its trailing empty cells.
func firstRow(f *excelize.File, sheet string) ([]string, error) {
	rows, err := f.Rows(sheet)
	if err != nil {
		return nil, fmt.Errorf("read xlsx sheet %q: %w", sheet, err)
	}
	defer rows.Close()
	if !rows.Next() {
		return nil, rows.Error()
	}
	row, err := rows.Columns(excelize.Options{RawCellValue: true})
	return trimRight(row), err
}

// sheetRows reads a sheet's row count from its dimension ("A1:G100001"),
// without reading its rows; 0 when the sheet does not say.
func sheetRows(f *excelize.File, sheet string) int {
	dim, err := f.GetSheetDimension(sheet)
	if err != nil {
		return 0
	}
	_, last, ok := strings.Cut(dim, ":")
	if !ok {
		return 0 // a single cell: the sheet does not say
	}
	n, _ := strconv.Atoi(strings.TrimLeft(last, "ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
	return n
}

// countRows counts a sheet's rows by reading it through once.
func countRows(f *excelize.File, sheet string) (int, error) {
	rows, err := f.Rows(sheet)
	if err != nil {
		return 0, fmt.Errorf("read xlsx sheet %q: %w", sheet, err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	return n, rows.Error()
}

func trimRight(row []string) []string {
	for len(row) > 0 && strings.TrimSpace(row[len(row)-1]) == "" {
		row = row[:len(row)-1]
	}
	return row
}

// ReadAll reads every row (for small tables and tests).
func ReadAll(r *Rows) ([][]string, error) {
	var out [][]string
	for {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, row)
	}
}

// XLSXContentType is what a workbook is served as.
const XLSXContentType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

// WriteXLSX writes a one-sheet workbook to w, its rows streamed (next
// returns false after the last): numbers as numbers, the rest as text.
func WriteXLSX(w io.Writer, sheet string, next func() ([]any, bool)) error {
	f := excelize.NewFile()
	defer f.Close()
	if err := f.SetSheetName("Sheet1", sheet); err != nil {
		return fmt.Errorf("write xlsx: %w", err)
	}
	sw, err := f.NewStreamWriter(sheet)
	if err != nil {
		return fmt.Errorf("write xlsx: %w", err)
	}
	for i := 1; ; i++ {
		row, ok := next()
		if !ok {
			break
		}
		cell, _ := excelize.CoordinatesToCellName(1, i)
		if err := sw.SetRow(cell, row); err != nil {
			return fmt.Errorf("write xlsx row %d: %w", i, err)
		}
	}
	if err := sw.Flush(); err != nil {
		return fmt.Errorf("write xlsx: %w", err)
	}
	if _, err := f.WriteTo(w); err != nil {
		return fmt.Errorf("write xlsx: %w", err)
	}
	return nil
}

// Strings adapts rows of text to WriteXLSX.
func Strings(rows [][]string) func() ([]any, bool) {
	i := 0
	return func() ([]any, bool) {
		if i >= len(rows) {
			return nil, false
		}
		out := make([]any, len(rows[i]))
		for j, c := range rows[i] {
			out[j] = c
		}
		i++
		return out, true
	}
}
