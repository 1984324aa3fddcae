package model

import (
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"

	"gorm.io/gorm/schema"
)

// patientColumns are the columns that name a patient.
var patientColumns = map[string]bool{"patient_id": true, "owner_id": true, "subject_id": true}

func typeName(m any) string { return reflect.TypeOf(m).Elem().Name() }

// Every model is classified: in the registry of patient data, or listed as
// holding none with a reason. A model with a patient column must be in the
// registry.
func TestEveryModelIsClassified(t *testing.T) {
	reg := map[string]PatientData{}
	for _, e := range PatientRegistry() {
		n := typeName(e.Model)
		if _, dup := reg[n]; dup {
			t.Errorf("%s is registered twice", n)
		}
		reg[n] = e
	}
	not := map[string]string{}
	for m, why := range NotPatientData() {
		not[typeName(m)] = why
	}
	cache := &sync.Map{}
	all := map[string]bool{}
	for _, m := range AllModels() {
		n := typeName(m)
		all[n] = true
		s, err := schema.Parse(m, cache, schema.NamingStrategy{})
		if err != nil {
			t.Fatal(err)
		}
		var cols []string
		for _, f := range s.Fields {
			if patientColumns[f.DBName] || strings.HasSuffix(f.Name, "PatientID") {
				cols = append(cols, f.DBName)
			}
		}
		e, inReg := reg[n]
		why, exempt := not[n]
		switch {
		case inReg && exempt:
			t.Errorf("%s is both patient data and not", n)
		case !inReg && !exempt:
			t.Errorf("%s is neither in PatientRegistry nor in NotPatientData: declare what merge, export and erase do with it", n)
		case exempt && len(cols) > 0:
			t.Errorf("%s has a patient column %v but is declared as not patient data (%q)", n, cols, why)
		case exempt && strings.TrimSpace(why) == "":
			t.Errorf("%s is exempted without a reason", n)
		case inReg:
			checkEntry(t, n, e, s)
		}
	}
	for n := range reg {
		if !all[n] {
			t.Errorf("%s is registered but not migrated (AllModels)", n)
		}
	}
}

func checkEntry(t *testing.T, n string, e PatientData, s *schema.Schema) {
	t.Helper()
	switch {
	case e.Column == "" && e.Parent == "":
		t.Errorf("%s: neither a patient column nor a parent", n)
	case e.Column != "" && s.LookUpField(e.Column) == nil:
		t.Errorf("%s: no column %s", n, e.Column)
	case e.Parent != "" && strings.Count(e.Parent, "?") != 1:
		t.Errorf("%s: the parent condition needs one placeholder", n)
	}
	if e.Merge == 0 || e.Erase == 0 {
		t.Errorf("%s: merge and erase rules are required", n)
	}
	if (e.Merge == MergeWithParent || e.Merge == MergeByOpenID) != (e.Parent != "") {
		t.Errorf("%s: rows reached through a parent merge with it, and only those", n)
	}
	if e.Merge == MergeCombine && e.MergeNote == "" {
		t.Errorf("%s: a combining merge needs its rule written down", n)
	}
	if e.Erase != EraseDelete && e.EraseNote == "" {
		t.Errorf("%s: an erasure that keeps anything needs its reason", n)
	}
	if (e.Export == "") == (e.NoExport == "") {
		t.Errorf("%s: either an export key or the reason for none", n)
	}
}

// The README's table of patient data lists every registered model.
func TestReadmeListsTheRegistry(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range PatientRegistry() {
		if !strings.Contains(string(raw), "| `"+typeName(e.Model)+"` |") {
			t.Errorf("README: no row for %s in the patient data table", typeName(e.Model))
		}
	}
}
