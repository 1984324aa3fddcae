package service

import (
	"context"
	"fmt"
	"math/bits"
	"strings"
	"sync"
	"time"

	"careloop/model"
)

// Counting a segment over a million patients: instead of one query whose
// every condition is a semi-join against the patients table, each
// condition's patients are read as a set of ids (most straight from the
// table that holds the fact, never touching patients), and the sets are
// combined in memory by the groups' AND/OR, then with the live patients
// (cached a little while). The SQL form stays for listing, exporting and
// preparing campaigns, which stream the members.

// idSet is a set of patient ids, a bit each.
type idSet []uint64

func (s *idSet) add(id uint64) {
	w := int(id / 64)
	if w >= len(*s) {
		*s = append(*s, make([]uint64, w-len(*s)+1)...)
	}
	(*s)[w] |= 1 << (id % 64)
}

func (s idSet) and(o idSet) idSet {
	out := make(idSet, min(len(s), len(o)))
	for i := range out {
		out[i] = s[i] & o[i]
	}
	return out
}

func (s idSet) or(o idSet) idSet {
	a, b := s, o
	if len(a) < len(b) {
		a, b = b, a
	}
	out := make(idSet, len(a))
	copy(out, a)
	for i := range b {
		out[i] |= b[i]
	}
	return out
}

// andNot is s without o.
func (s idSet) andNot(o idSet) idSet {
	out := make(idSet, len(s))
	copy(out, s)
	for i := range out {
		if i < len(o) {
			out[i] &^= o[i]
		}
	}
	return out
}

func (s idSet) count() int64 {
	n := 0
	for _, w := range s {
		n += bits.OnesCount64(w)
	}
	return int64(n)
}

// top returns up to n ids, highest first.
func (s idSet) top(n int) []uint64 {
	var out []uint64
	for w := len(s) - 1; w >= 0 && len(out) < n; w-- {
		for word := s[w]; word != 0 && len(out) < n; {
			b := 63 - bits.LeadingZeros64(word)
			out = append(out, uint64(w*64+b))
			word &^= 1 << b
		}
	}
	return out
}

// liveCache keeps the ids of the live patients (not erased, not blocked)
// for a short while: counts while a segment is being edited need not read
// a million rows each time.
type liveCache struct {
	mu  sync.Mutex
	ids idSet
	at  time.Time
	max uint64
}

const liveTTL = 30 * time.Second

func (s *Segments) live(ctx context.Context) (idSet, error) {
	s.liveIDs.mu.Lock()
	defer s.liveIDs.mu.Unlock()
	c := &s.liveIDs
	if c.ids == nil || s.now().Sub(c.at) >= liveTTL {
		set, err := s.readSet(ctx, "SELECT id FROM patients WHERE erased_at IS NULL AND blocked_at IS NULL", nil)
		if err != nil {
			return nil, err
		}
		c.ids, c.at, c.max = set, s.now(), set.max()
		return c.ids, nil
	}
	// Patients registered since: added at once (an erasure or a block
	// shows when the cache is renewed).
	more, err := s.readSet(ctx, "SELECT id FROM patients WHERE id > ? AND erased_at IS NULL AND blocked_at IS NULL", []any{c.max})
	if err != nil {
		return nil, err
	}
	if m := more.max(); m > c.max {
		c.ids, c.max = c.ids.or(more), m
	}
	return c.ids, nil
}

// max is the highest id in s (0 when empty).
func (s idSet) max() uint64 {
	if t := s.top(1); len(t) == 1 {
		return t[0]
	}
	return 0
}

// readSet reads the ids a query selects (its first column).
func (s *Segments) readSet(ctx context.Context, sql string, args []any) (idSet, error) {
	rows, err := s.db.Conn(ctx).Raw(sql, args...).Rows()
	if err != nil {
		return nil, fmt.Errorf("segment set: %w", err)
	}
	defer rows.Close()
	var set idSet
	for rows.Next() {
		var id *uint64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("segment set: %w", err)
		}
		if id != nil {
			set.add(*id)
		}
	}
	return set, rows.Err()
}

// membership splits a compiled condition "p.id IN (SUB)" or "p.id NOT IN
// (SUB)" into SUB and whether it is negated; ok is false for any other
// shape (a condition on the patient's own columns, or a compound one).
func membership(cond string) (sub string, negate, ok bool) {
	for _, prefix := range []string{"p.id IN (", "p.id NOT IN ("} {
		if !strings.HasPrefix(cond, prefix) || !strings.HasSuffix(cond, ")") {
			continue
		}
		inner := cond[len(prefix) : len(cond)-1]
		depth := 0
		for _, r := range inner {
			switch r {
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth < 0 {
				return "", false, false // the parenthesis closed before the end: compound
			}
		}
		if depth != 0 {
			return "", false, false
		}
		return inner, prefix == "p.id NOT IN (", true
	}
	return "", false, false
}

// compiled compiles one condition.
func compiled(q *segQuery, gi, i int, x SegmentCondition) (string, []any, error) {
	v, err := readValue(gi, i, x)
	if err != nil {
		return "", nil, err
	}
	cond, args, err := segFields[x.Field].build(q, x, v)
	if err != nil {
		if e, ok := model.AsError(err); ok && e.Code == ErrBadCondition.Code && e.Details == nil {
			return "", nil, badCond(gi, i, x.Field, "%s", e.Message)
		}
		return "", nil, err
	}
	return cond, args, nil
}

// groupSet is the set of live patients a group selects: each membership
// condition read from its own table, the conditions on the patients' own
// columns (and compound ones) in one scan of patients, joined as the
// group says.
func (s *Segments) groupSet(ctx context.Context, q *segQuery, live idSet, gi int, g SegmentGroup) (idSet, error) {
	join := " AND "
	if g.Match == "any" {
		join = " OR "
	}
	var out idSet
	first := true
	combine := func(set idSet) {
		switch {
		case first:
			out, first = set, false
		case g.Match == "any":
			out = out.or(set)
		default:
			out = out.and(set)
		}
	}
	var rest []string
	var restArgs []any
	for i, x := range g.Conditions {
		cond, args, err := compiled(q, gi, i, x)
		if err != nil {
			return nil, err
		}
		sub, negate, ok := membership(cond)
		if !ok {
			rest = append(rest, "("+cond+")")
			restArgs = append(restArgs, args...)
			continue
		}
		set, err := s.readSet(ctx, sub, args)
		if err != nil {
			return nil, err
		}
		if negate {
			combine(live.andNot(set))
		} else {
			combine(live.and(set))
		}
	}
	if len(rest) > 0 {
		set, err := s.readSet(ctx, "SELECT p.id FROM patients AS p WHERE p.erased_at IS NULL AND p.blocked_at IS NULL AND ("+strings.Join(rest, join)+")", restArgs)
		if err != nil {
			return nil, err
		}
		combine(set)
	}
	return out, nil
}

// evaluate returns the set of live patients c selects (validated before).
func (s *Segments) evaluate(ctx context.Context, c SegmentConditions) (idSet, error) {
	q := s.query(ctx)
	live, err := s.live(ctx)
	if err != nil {
		return nil, err
	}
	if len(c.Groups) == 0 {
		return live, nil
	}
	var out idSet
	for gi, g := range c.Groups {
		gs, err := s.groupSet(ctx, q, live, gi, g)
		if err != nil {
			return nil, err
		}
		switch {
		case gi == 0:
			out = gs
		case c.Match == "any":
			out = out.or(gs)
		default:
			out = out.and(gs)
		}
	}
	return out, nil
}
