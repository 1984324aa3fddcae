package model

import (
	"testing"
	"time"
)

func TestParseIDCard(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, Shanghai)
	for _, c := range []struct {
		in, gender, birth, region string
		ok                        bool
	}{
		{"11010519491231002X", "female", "1949-12-31", "110105", true}, // the standard's own example
		{"11010519491231002x", "female", "1949-12-31", "110105", true}, // a small x is read as X
		{"440524188001010014", "male", "1880-01-01", "", false},        // before 1900
		{"110105194912310021", "", "", "", false},                      // wrong check digit
		{"11010519491331002X", "", "", "", false},                      // month 13
		{"1101051949123100", "", "", "", false},                        // 16 digits
		{"11010520301231002X", "", "", "", false},                      // born in the future
		{"11O10519491231002X", "", "", "", false},                      // a letter O
	} {
		id, err := ParseIDCard(c.in, now)
		if (err == nil) != c.ok {
			t.Errorf("%s: err %v", c.in, err)
			continue
		}
		if c.ok && (id.Gender != c.gender || DateString(id.Birth) != c.birth || id.Region != c.region || id.Number != "11010519491231002X") {
			t.Errorf("%s: %+v", c.in, id)
		}
	}
	if m := MaskIDCard("11010519491231002X"); m != "1101**********002X" {
		t.Errorf("mask: %s", m)
	}
}

func TestRegionName(t *testing.T) {
	for code, want := range map[string]string{
		"110105": "北京市朝阳区",
		"440305": "广东省深圳市南山区",
		"310101": "上海市黄浦区",
		"440399": "广东省深圳市", // a county code not in the table: its city
		"99":     "",
	} {
		if got := RegionName(code); got != want {
			t.Errorf("%s: %q, want %q", code, got, want)
		}
	}
}
