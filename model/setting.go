package model

import "time"

// Setting is one JSON document of runtime settings staff can edit (the
// care rules, for one).
type Setting struct {
	Key       string `gorm:"primaryKey;size:64"`
	Value     string `gorm:"type:text"`
	UpdatedBy uint64
	UpdatedAt time.Time
}
