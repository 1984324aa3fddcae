package model

import (
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"", 5, ""},
		{"abc", 3, "abc"},
		{"abcd", 3, "ab…"},
		{"体检报告已出", 6, "体检报告已出"},
		{"体检报告已出", 5, "体检报告…"},
		{"微信返回 45009（接口调用超过每日限额）", 10, "微信返回 4500…"},
		{"abc", 1, "…"},
		{"abc", 0, ""},
	} {
		got := Truncate(c.in, c.n)
		if got != c.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
		if !utf8.ValidString(got) || utf8.RuneCountInString(got) > max(c.n, 0) {
			t.Errorf("Truncate(%q, %d) = %q: invalid or too long", c.in, c.n, got)
		}
	}
}
