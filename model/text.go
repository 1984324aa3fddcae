package model

import (
	"strings"
	"unicode/utf8"
)

// Truncate cuts s to at most n characters (not bytes: a Chinese character
// is never split), ending with "…" when it had to cut, so a reader knows
// there was more. Every length limit on stored or sent text goes through it.
func Truncate(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if len(s) <= n || utf8.RuneCountInString(s) <= n {
		return s
	}
	cut, count := 0, 0
	for i := range s {
		if count == n-1 {
			cut = i
			break
		}
		count++
	}
	return s[:cut] + "…"
}

// LikeEscape makes s match itself in a LIKE pattern written with
// LikeEscapeClause ("!" escapes on MySQL and SQLite alike; a backslash
// does not, SQLite has no default escape).
func LikeEscape(s string) string {
	return strings.NewReplacer("!", "!!", "%", "!%", "_", "!_").Replace(s)
}

// LikeEscapeClause follows every LIKE whose pattern went through LikeEscape.
const LikeEscapeClause = " ESCAPE '!'"
