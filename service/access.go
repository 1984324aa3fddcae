package service

import (
	"slices"
	"sort"

	"careloop/model"
)

// Action is one kind of thing a staff member does. Every staff use case
// checks its action against the role table below before it reads or
// changes anything, so the rule holds whoever calls it: a route, a job or a
// future console endpoint. The routes check the same table first (403
// before the body is read) and the spec lists it per operation (x-action,
// x-roles); a test keeps the three equal.
type Action string

// The staff actions.
const (
	ActPatientsRead      Action = "patients.read"      // search patients, open a patient's 360° view
	ActPatientsTag       Action = "patients.tag"       // put a tag on a patient or take it off
	ActPatientsBlock     Action = "patients.block"     // block or unblock a patient
	ActPatientsImport    Action = "patients.import"    // upload a HIS export and follow its import
	ActTagsRead          Action = "tags.read"          // list the tag catalogue
	ActTagsManage        Action = "tags.manage"        // create and delete tags
	ActStaffManage       Action = "staff.manage"       // staff accounts
	ActAuditRead         Action = "audit.read"         // the audit log
	ActPackagesRead      Action = "packages.read"      // the whole package catalogue, hidden ones too
	ActPackagesManage    Action = "packages.manage"    // create and change packages
	ActScheduleRead      Action = "schedule.read"      // slots with their bookings counted
	ActScheduleManage    Action = "schedule.manage"    // generate slots, close and open days
	ActBookingsDesk      Action = "bookings.desk"      // search bookings, check in, complete, no-show, undo
	ActChatAnswer        Action = "chat.answer"        // the doctors' inbox: read, reply, claim, transfer, close, own duty
	ActChatDutyOthers    Action = "chat.duty_others"   // put another doctor on or off duty
	ActChatSettings      Action = "chat.settings"      // change chat hours and limits
	ActComplaintsHandle  Action = "complaints.handle"  // read and advance complaints
	ActTasksWork         Action = "tasks.work"         // see and close one's role's tasks
	ActKPIRead           Action = "kpi.read"           // the staff KPI report
	ActNotificationsRead Action = "notifications.read" // the outbox and the dispatcher's holds
	ActNotificationsFix  Action = "notifications.fix"  // retry or cancel a notification
	ActCareRules         Action = "care_rules.manage"  // birthday, holiday and re-check rules
	ActPointsRead        Action = "points.read"        // a patient's points ledger
	ActPointsManage      Action = "points.manage"      // levels, rewards, adjustments
	ActReportsLink       Action = "reports.link"       // unmatched reports and linking them to a patient
	ActReportsClinical   Action = "reports.clinical"   // read a report, write its interpretation
	ActSurveysManage     Action = "surveys.manage"     // define surveys, read results
	ActOAManage          Action = "oa.manage"          // official account: auto-replies, welcome, menu
	ActArticles          Action = "articles.manage"    // write, preview and publish articles; upload their images; read their figures
	ActMassSend          Action = "mass_sends.manage"  // mass sends to the official account's followers
	ActChannels          Action = "channels.manage"    // channels, their QR codes and figures
	ActRFM               Action = "rfm.manage"         // RFM scoring runs, value tiers and their migration
	ActCampaigns         Action = "campaigns.manage"   // campaigns: write, start, pause, resume, cancel, follow; the fatigue cap
	ActSegments          Action = "segments.manage"    // segments: build, count, list, export (on health data: also reports.clinical)
)

// roleTable lists, per action, the roles besides admin that may do it (an
// admin may do everything; an empty list means admins only).
var roleTable = map[Action][]string{
	ActPatientsRead:      {model.RoleMarketing, model.RoleDoctor, model.RoleFrontDesk},
	ActPatientsTag:       {model.RoleMarketing, model.RoleDoctor},
	ActPatientsBlock:     {},
	ActPatientsImport:    {},
	ActTagsRead:          {model.RoleMarketing, model.RoleDoctor, model.RoleFrontDesk},
	ActTagsManage:        {model.RoleMarketing},
	ActStaffManage:       {},
	ActAuditRead:         {},
	ActPackagesRead:      {model.RoleMarketing, model.RoleDoctor, model.RoleFrontDesk},
	ActPackagesManage:    {model.RoleMarketing},
	ActScheduleRead:      {model.RoleFrontDesk},
	ActScheduleManage:    {model.RoleFrontDesk},
	ActBookingsDesk:      {model.RoleFrontDesk},
	ActChatAnswer:        {model.RoleDoctor},
	ActChatDutyOthers:    {},
	ActChatSettings:      {},
	ActComplaintsHandle:  {model.RoleMarketing, model.RoleDoctor, model.RoleFrontDesk},
	ActTasksWork:         {model.RoleMarketing, model.RoleDoctor, model.RoleFrontDesk},
	ActKPIRead:           {},
	ActNotificationsRead: {model.RoleMarketing, model.RoleDoctor, model.RoleFrontDesk},
	ActNotificationsFix:  {model.RoleMarketing, model.RoleFrontDesk},
	ActCareRules:         {},
	ActPointsRead:        {model.RoleMarketing, model.RoleFrontDesk},
	ActPointsManage:      {model.RoleMarketing},
	ActReportsLink:       {model.RoleFrontDesk, model.RoleDoctor},
	ActReportsClinical:   {model.RoleDoctor},
	ActSurveysManage:     {model.RoleMarketing},
	ActOAManage:          {model.RoleMarketing},
	ActArticles:          {model.RoleMarketing},
	ActMassSend:          {model.RoleMarketing},
	ActChannels:          {model.RoleMarketing},
	ActRFM:               {model.RoleMarketing},
	ActSegments:          {model.RoleMarketing, model.RoleDoctor},
	ActCampaigns:         {model.RoleMarketing},
}

// May reports whether p, a staff member, may do a. Patients and unknown
// actions may do nothing.
func (p Principal) May(a Action) bool {
	if !p.IsStaff() {
		return false
	}
	roles, known := roleTable[a]
	if !known {
		return false
	}
	return p.Role == model.RoleAdmin || slices.Contains(roles, p.Role)
}

// must is May as an error: forbidden when p may not do a.
func (p Principal) must(a Action) error {
	if !p.May(a) {
		return model.ErrForbidden
	}
	return nil
}

// Roles returns every role that may do a, admin first.
func Roles(a Action) []string {
	return append([]string{model.RoleAdmin}, roleTable[a]...)
}

// ActionsOf returns the actions a staff member of role may do, sorted.
func ActionsOf(role string) []Action {
	p := Principal{Kind: model.SubjectStaff, Role: role}
	out := []Action{}
	for _, a := range Actions() {
		if p.May(a) {
			out = append(out, a)
		}
	}
	return out
}

// Actions returns every staff action, sorted.
func Actions() []Action {
	out := make([]Action, 0, len(roleTable))
	for a := range roleTable {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// System is the principal of careloop's own jobs (demo data, imports run
// from the command line): an admin with no session.
var System = Principal{Kind: model.SubjectStaff, Role: model.RoleAdmin}
