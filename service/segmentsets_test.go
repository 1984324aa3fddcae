package service

import (
	"slices"
	"testing"
)

func TestIDSets(t *testing.T) {
	var a, b idSet
	for _, id := range []uint64{1, 64, 65, 200, 1000} {
		a.add(id)
	}
	for _, id := range []uint64{64, 200, 7} {
		b.add(id)
	}
	if got := a.and(b).top(10); !slices.Equal(got, []uint64{200, 64}) {
		t.Fatalf("and: %v", got)
	}
	if got := a.or(b).count(); got != 6 {
		t.Fatalf("or: %d", got)
	}
	if got := a.andNot(b).top(10); !slices.Equal(got, []uint64{1000, 65, 1}) {
		t.Fatalf("and not: %v", got)
	}
	if got := a.top(2); !slices.Equal(got, []uint64{1000, 200}) || a.max() != 1000 || (idSet{}).max() != 0 {
		t.Fatalf("top: %v", got)
	}
}

func TestMembershipShape(t *testing.T) {
	for cond, want := range map[string]string{
		"p.id IN (SELECT patient_id FROM x WHERE a IN ?)":                              "SELECT patient_id FROM x WHERE a IN ?",
		"p.id NOT IN (SELECT patient_id FROM (SELECT 1) AS g)":                         "SELECT patient_id FROM (SELECT 1) AS g",
		"p.id IN (SELECT patient_id FROM x) AND p.id NOT IN (SELECT 1)":                "",
		"p.source IN ? OR p.id IN (SELECT patient_id FROM followers)":                  "",
		"(p.id IN (SELECT patient_id FROM a)) OR (p.id IN (SELECT patient_id FROM b))": "",
	} {
		sub, _, ok := membership(cond)
		if (want == "") == ok || sub != want {
			t.Errorf("%s: %q %v", cond, sub, ok)
		}
	}
}
