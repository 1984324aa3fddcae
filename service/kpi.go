package service

import (
	"context"
	"sort"
	"time"

	"careloop/model"
)

// KPIRow is one department's or one staff member's numbers for a period.
type KPIRow struct {
	Scope              string   `json:"scope"` // department or staff
	Name               string   `json:"name"`
	StaffID            uint64   `json:"staff_id,omitempty"`
	Complaints         int      `json:"complaints"`
	Resolved           int      `json:"resolved"`
	AvgResolutionHours *float64 `json:"avg_resolution_hours"`
	Responses          int      `json:"survey_responses"`
	CSAT               *float64 `json:"csat"`
	NPS                *float64 `json:"nps"`
	FollowUpsDone      int      `json:"follow_ups_done"`
}

type acc struct {
	row      KPIRow
	resHours float64
	answers  scores
}

func (a *acc) finish() KPIRow {
	r := a.row
	if r.Resolved > 0 {
		v := a.resHours / float64(r.Resolved)
		r.AvgResolutionHours = &v
	}
	r.Responses, r.CSAT, r.NPS = a.answers.responses, a.answers.csat(), a.answers.nps()
	return r
}

// KPI computes the period's numbers per department and per staff member;
// the read is on record (format says how it was taken: the page or a CSV).
func (s *Complaints) KPI(ctx context.Context, by Principal, from, to time.Time, format string) ([]KPIRow, error) {
	if err := by.must(ActKPIRead); err != nil {
		return nil, err
	}
	if err := s.audit.Record(ctx, by, AuditExport, nil, "kpi "+format); err != nil {
		return nil, err
	}
	db := s.db
	rows := map[string]*acc{}
	get := func(scope, name string, staffID uint64) *acc {
		k := scope + "|" + name
		if rows[k] == nil {
			rows[k] = &acc{row: KPIRow{Scope: scope, Name: name, StaffID: staffID}}
		}
		return rows[k]
	}
	var staff []model.Staff
	if err := db.Conn(ctx).Select("id", "name", "username").Find(&staff).Error; err != nil {
		return nil, err
	}
	names := map[uint64]string{}
	for _, s := range staff {
		names[s.ID] = s.DisplayName()
	}
	staffRow := func(id uint64) *acc { return get("staff", names[id], id) }

	var cs []model.Complaint
	if err := db.Conn(ctx).Where("created_at >= ? AND created_at < ?", from.UTC(), to.UTC()).Find(&cs).Error; err != nil {
		return nil, err
	}
	for _, c := range cs {
		targets := []*acc{get("department", deptName(c.Department), 0)}
		if c.AssigneeID != 0 {
			targets = append(targets, staffRow(c.AssigneeID))
		}
		for _, a := range targets {
			a.row.Complaints++
			if c.ResolvedAt != nil {
				a.row.Resolved++
				a.resHours += c.ResolvedAt.Sub(c.CreatedAt).Hours()
			}
		}
	}
	var rs []model.SurveyResponse
	if err := db.Conn(ctx).Where("created_at >= ? AND created_at < ?", from.UTC(), to.UTC()).Find(&rs).Error; err != nil {
		return nil, err
	}
	for _, r := range rs {
		targets := []*acc{get("department", deptName(r.Department), 0)}
		if r.DoctorID != 0 {
			targets = append(targets, staffRow(r.DoctorID))
		}
		for _, a := range targets {
			a.answers.add(&r)
		}
	}
	var tasks []model.Task
	if err := db.Conn(ctx).Where("kind = ? AND status = ? AND done_at >= ? AND done_at < ?", "follow_up", "done", from.UTC(), to.UTC()).Find(&tasks).Error; err != nil {
		return nil, err
	}
	for _, t := range tasks {
		if t.AssignedTo != 0 {
			staffRow(t.AssignedTo).row.FollowUpsDone++
		}
	}
	out := make([]KPIRow, 0, len(rows))
	for _, a := range rows {
		out = append(out, a.finish())
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Scope != out[j].Scope {
			return out[i].Scope < out[j].Scope
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

func deptName(d string) string {
	if d == "" {
		return "未分配"
	}
	return d
}
