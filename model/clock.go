package model

import (
	"time"
	_ "time/tzdata" // the image may have no zoneinfo; Asia/Shanghai must load anyway
)

// Shanghai is the time zone of everything a patient or staff member sees.
var Shanghai = func() *time.Location {
	loc, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		panic(err)
	}
	return loc
}()

// LocalTime formats t as RFC 3339 in Asia/Shanghai (+08:00), the API's form.
func LocalTime(t time.Time) string { return t.In(Shanghai).Format(time.RFC3339) }

// Calendar dates (a birth date) are stored as midnight UTC of that date, so
// that the database's own date functions see the right day.

// DateString formats a stored calendar date as YYYY-MM-DD.
func DateString(d time.Time) string { return d.UTC().Format(time.DateOnly) }
