package handler

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// adminPatients serves staff work on patients: search, the 360 view,
// tagging and blocking.
type adminPatients struct {
	admin   *service.PatientAdmin
	tags    *service.Tags
	profile *service.Profile
}

// Register mounts the routes; every staff role may search and view,
// tagging needs marketing or doctor, blocking needs admin.
func (h adminPatients) Register(rg *gin.RouterGroup) {
	read := allow(service.ActPatientsRead)
	rg.GET("/patients", read, h.search)
	rg.GET("/patients/:id", read, h.view)
	rg.POST("/patients/:id/tags", allow(service.ActPatientsTag), h.addTag)
	rg.DELETE("/patients/:id/tags/:tag_id", allow(service.ActPatientsTag), h.removeTag)
	rg.POST("/patients/:id/block", allow(service.ActPatientsBlock), h.block)
	rg.POST("/patients/:id/unblock", allow(service.ActPatientsBlock), h.unblock)
}

// PatientSummaryDTO is a patient in a staff list.
type PatientSummaryDTO struct {
	PatientDTO
	Phone   string `json:"phone"`
	HISID   string `json:"his_id,omitempty"`
	Blocked bool   `json:"blocked"`
}

func (h adminPatients) summary(p *model.Patient, role string) PatientSummaryDTO {
	phone := h.profile.Phone(p)
	if !service.SeesFullPhone(role) {
		phone = service.MaskPhone(phone)
	}
	d := PatientSummaryDTO{PatientDTO: patientDTO(p), Phone: phone, Blocked: p.BlockedAt != nil}
	if p.HISID != nil {
		d.HISID = *p.HISID
	}
	return d
}

func (h adminPatients) search(c *gin.Context) {
	q := service.PatientQuery{Name: c.Query("name"), Phone: c.Query("phone"), Q: c.Query("q"), Cursor: c.Query("cursor")}
	var ok bool
	if q.Limit, ok = queryLimit(c); !ok {
		return
	}
	if t := c.Query("tags"); t != "" {
		for _, part := range strings.Split(t, ",") {
			id, err := strconv.ParseUint(strings.TrimSpace(part), 10, 64)
			if err != nil {
				fail(c, model.ErrInvalid.WithMessage("tags 应为逗号分隔的标签编号"))
				return
			}
			q.TagIDs = append(q.TagIDs, id)
		}
	}
	p := principal(c)
	rows, next, err := h.admin.Search(c.Request.Context(), p, q)
	renderPage(c, rows, next, err, func(pt *model.Patient) PatientSummaryDTO { return h.summary(pt, p.Role) })
}

// AssignedTagDTO is a tag on a patient.
type AssignedTagDTO struct {
	TagDTO
	AssignedBy uint64 `json:"assigned_by"` // staff id; 0 = the system
	AssignedAt string `json:"assigned_at"`
}

// Patient360DTO is the staff's one view of a patient.
type Patient360DTO struct {
	PatientSummaryDTO
	Tags     []AssignedTagDTO `json:"tags"`
	Family   []FamilyDTO      `json:"family_members"`
	Consents []ConsentDTO     `json:"consents"`
	// Health is present only for roles that may read it (admin, doctor).
	Health   *service.HealthData `json:"health_archive,omitempty"`
	Bookings []gin.H             `json:"bookings"`
	// Reports are listed only for roles that may read them (admin, doctor).
	Reports       []ReportSummaryDTO `json:"reports,omitempty"`
	Notifications []gin.H            `json:"notifications"`
	// The rest only for the roles whose work they are.
	Points        *gin.H  `json:"points,omitempty"`
	Surveys       []gin.H `json:"surveys,omitempty"`
	Complaints    []gin.H `json:"complaints,omitempty"`
	Conversations []gin.H `json:"conversations,omitempty"`
	// RFM is the latest value tier and scores, with the tier history.
	RFM *gin.H `json:"rfm,omitempty"`
}

func (h adminPatients) view(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	p := principal(c)
	v, err := h.admin.View(c.Request.Context(), p, id)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, h.dto360(v, p.Role))
}

// dto360 renders a patient's 360 for a staff role.
func (h adminPatients) dto360(v *service.Patient360, role string) Patient360DTO {
	out := Patient360DTO{PatientSummaryDTO: h.summary(&v.Patient, role), Consents: consentDTOs(v.Consents), Health: v.Health}
	out.Phone, out.IDCard = v.Phone, v.IDCard
	out.Tags = []AssignedTagDTO{}
	for _, t := range v.Tags {
		out.Tags = append(out.Tags, assignedTagDTO(&t))
	}
	if r := v.RFM; r != nil {
		hist := make([]gin.H, 0, len(r.History))
		for _, t := range r.History {
			hist = append(hist, gin.H{"run_id": t.RunID, "as_of": model.LocalTime(t.AsOf), "tier": t.Tier, "tier_name": model.TierNames[t.Tier]})
		}
		l := r.Latest
		out.RFM = &gin.H{"r": l.R, "f": l.F, "m": l.M, "r_score": l.RScore, "f_score": l.FScore, "m_score": l.MScore, "tier": l.Tier,
			"tier_name": model.TierNames[l.Tier], "as_of": model.LocalTime(r.AsOf), "history": hist}
	}
	out.Bookings = []gin.H{}
	for _, b := range v.Bookings {
		out.Bookings = append(out.Bookings, gin.H{"id": b.ID, "code": b.Code, "date": b.Date, "status": b.Status, "package_id": b.PackageID,
			"family_member_id": b.FamilyMemberID, "price_fen": b.PriceFen})
	}
	if v.Reports != nil {
		out.Reports = []ReportSummaryDTO{}
		for i := range v.Reports {
			out.Reports = append(out.Reports, reportSummary(&v.Reports[i]))
		}
	}
	out.Notifications = []gin.H{}
	for _, n := range v.Notices {
		out.Notifications = append(out.Notifications, gin.H{"id": n.ID, "reason": n.Reason, "status": n.Status, "channel": n.Channel,
			"due_at": model.LocalTime(n.DueAt), "last_error": n.LastError})
	}
	out.Family = []FamilyDTO{}
	for _, m := range v.Family {
		d := FamilyDTO{ID: m.ID, Name: m.Name, Relation: m.Relation, Gender: m.Gender, IDCard: m.IDCardMask}
		if m.BirthDate != nil {
			d.BirthDate = model.DateString(*m.BirthDate)
		}
		out.Family = append(out.Family, d)
	}
	if v.Points != nil {
		out.Points = &gin.H{"balance": v.Points.Balance, "growth": v.Points.Growth}
	}
	if v.Surveys != nil {
		out.Surveys = []gin.H{}
		for _, r := range v.Surveys {
			out.Surveys = append(out.Surveys, gin.H{"id": r.ID, "survey_id": r.SurveyID, "nps": r.NPS, "csat": r.CSAT, "comment": r.Comment,
				"department": r.Department, "created_at": model.LocalTime(r.CreatedAt)})
		}
	}
	if v.Complaints != nil {
		out.Complaints = []gin.H{}
		for _, c := range v.Complaints {
			out.Complaints = append(out.Complaints, gin.H{"id": c.ID, "category": c.Category, "status": c.Status, "content": c.Content,
				"created_at": model.LocalTime(c.CreatedAt)})
		}
	}
	if v.Conversations != nil {
		out.Conversations = []gin.H{}
		for _, c := range v.Conversations {
			out.Conversations = append(out.Conversations, gin.H{"id": c.ID, "topic": c.Topic, "status": c.Status, "doctor_id": c.DoctorID,
				"last_message_at": model.LocalTime(c.LastMessageAt)})
		}
	}
	return out
}

type tagRefRequest struct {
	TagID uint64 `json:"tag_id" binding:"required"`
}

func (h adminPatients) addTag(c *gin.Context) {
	id, req, ok := idAndJSON[tagRefRequest](c)
	if !ok {
		return
	}
	if err := h.tags.Assign(c.Request.Context(), principal(c), id, req.TagID); err != nil {
		fail(c, err)
		return
	}
	ts, err := h.tags.OfPatient(c.Request.Context(), id)
	renderList(c, ts, err, assignedTagDTO)
}

func assignedTagDTO(t *service.AssignedTag) AssignedTagDTO {
	return AssignedTagDTO{TagDTO: tagDTO(&t.Tag), AssignedBy: t.AssignedBy, AssignedAt: model.LocalTime(t.AssignedAt)}
}

func (h adminPatients) removeTag(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	tagID, err := strconv.ParseUint(c.Param("tag_id"), 10, 64)
	if err != nil {
		fail(c, model.ErrNotFound)
		return
	}
	noContent(c, h.tags.Unassign(c.Request.Context(), principal(c), id, tagID))
}

func (h adminPatients) block(c *gin.Context)   { h.setBlocked(c, true) }
func (h adminPatients) unblock(c *gin.Context) { h.setBlocked(c, false) }

func (h adminPatients) setBlocked(c *gin.Context, blocked bool) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	p := principal(c)
	if err := h.admin.SetBlocked(c.Request.Context(), p, id, blocked); err != nil {
		fail(c, err)
		return
	}
	pt, err := h.admin.Get(c.Request.Context(), id)
	renderOne(c, http.StatusOK, pt, err, func(pt *model.Patient) PatientSummaryDTO { return h.summary(pt, p.Role) })
}

// adminTags serves the tag catalogue.
type adminTags struct {
	tags *service.Tags
}

// Register mounts the catalogue: every staff role reads it, marketing edits.
func (h adminTags) Register(rg *gin.RouterGroup) {
	rg.GET("/tags", allow(service.ActTagsRead), h.list)
	rg.POST("/tags", allow(service.ActTagsManage), h.create)
	rg.DELETE("/tags/:id", allow(service.ActTagsManage), h.delete)
}

// TagDTO is a catalogue entry.
type TagDTO struct {
	ID          uint64 `json:"id"`
	Name        string `json:"name"`
	Category    string `json:"category"`
	Kind        string `json:"kind"`
	Description string `json:"description"`
}

func tagDTO(t *model.Tag) TagDTO {
	return TagDTO{ID: t.ID, Name: t.Name, Category: t.Category, Kind: t.Kind, Description: t.Description}
}

func (h adminTags) list(c *gin.Context) {
	ts, err := h.tags.List(c.Request.Context(), principal(c), c.Query("category"))
	renderList(c, ts, err, tagDTO)
}

type tagRequest struct {
	Name        string `json:"name" binding:"required"`
	Category    string `json:"category" binding:"required"`
	Kind        string `json:"kind"`
	Description string `json:"description"`
}

func (h adminTags) create(c *gin.Context) {
	var req tagRequest
	if !bindJSON(c, &req) {
		return
	}
	t, err := h.tags.Create(c.Request.Context(), principal(c), service.TagInput{Name: req.Name, Category: req.Category, Kind: req.Kind, Description: req.Description})
	renderOne(c, http.StatusCreated, t, err, tagDTO)
}

func (h adminTags) delete(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	noContent(c, h.tags.Delete(c.Request.Context(), principal(c), id))
}

// adminStaff serves staff accounts (admin only) and the audit log.
type adminStaff struct {
	staff *service.Staff
	audit *service.Audit
}

// Register mounts the routes; "me" is for every staff member.
func (h adminStaff) Register(rg *gin.RouterGroup) {
	rg.GET("/me", h.me)
	admin := allow(service.ActStaffManage)
	rg.GET("/staff", admin, h.list)
	rg.POST("/staff", admin, h.create)
	rg.PUT("/staff/:id", admin, h.update)
	rg.GET("/audit", allow(service.ActAuditRead), h.auditLog)
}

func (h adminStaff) me(c *gin.Context) {
	st, err := h.staff.Me(c.Request.Context(), principal(c))
	renderOne(c, http.StatusOK, st, err, func(st *model.Staff) meDTO { return meDTO{StaffDTO: staffDTO(st), Actions: service.ActionsOf(st.Role)} })
}

// StaffAccountDTO is a staff account in the admin list.
type StaffAccountDTO struct {
	StaffDTO
	Disabled bool `json:"disabled"`
}

func (h adminStaff) list(c *gin.Context) {
	ss, err := h.staff.List(c.Request.Context(), principal(c))
	if err != nil {
		fail(c, err)
		return
	}
	items := make([]StaffAccountDTO, 0, len(ss))
	for i := range ss {
		items = append(items, StaffAccountDTO{StaffDTO: staffDTO(&ss[i]), Disabled: ss[i].DisabledAt != nil})
	}
	c.JSON(http.StatusOK, gin.H{"items": items, "next_cursor": ""})
}

type staffRequest struct {
	Username string `json:"username"`
	Name     string `json:"name"`
	Role     string `json:"role"`
	Password string `json:"password"`
	Disabled *bool  `json:"disabled"`
}

func (r staffRequest) input() service.StaffInput {
	return service.StaffInput{Username: r.Username, Name: r.Name, Role: r.Role, Password: r.Password, Disabled: r.Disabled}
}

func (h adminStaff) create(c *gin.Context) {
	var req staffRequest
	if !bindJSON(c, &req) {
		return
	}
	st, err := h.staff.Create(c.Request.Context(), principal(c), req.input())
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusCreated, StaffAccountDTO{StaffDTO: staffDTO(st)})
}

func (h adminStaff) update(c *gin.Context) {
	id, req, ok := idAndJSON[staffRequest](c)
	if !ok {
		return
	}
	st, err := h.staff.Update(c.Request.Context(), principal(c), id, req.input())
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, StaffAccountDTO{StaffDTO: staffDTO(st), Disabled: st.DisabledAt != nil})
}

// AuditDTO is one audit-log entry.
type AuditDTO struct {
	ID        uint64  `json:"id"`
	StaffID   uint64  `json:"staff_id"`
	Role      string  `json:"role"`
	Action    string  `json:"action"`
	PatientID *uint64 `json:"patient_id"`
	Detail    string  `json:"detail"`
	IP        string  `json:"ip"`
	At        string  `json:"at"`
}

func (h adminStaff) auditLog(c *gin.Context) {
	f := service.AuditFilter{Action: c.Query("action"), Cursor: c.Query("cursor")}
	var ok bool
	if f.Limit, ok = queryLimit(c); !ok {
		return
	}
	f.StaffID, _ = strconv.ParseUint(c.Query("staff_id"), 10, 64)
	f.PatientID, _ = strconv.ParseUint(c.Query("patient_id"), 10, 64)
	if !queryTimes(c, &f.From, &f.To) {
		return
	}
	rows, next, err := h.audit.List(c.Request.Context(), principal(c), f)
	renderPage(c, rows, next, err, func(l *model.AuditLog) AuditDTO {
		return AuditDTO{ID: l.ID, StaffID: l.StaffID, Role: l.Role, Action: l.Action, PatientID: l.PatientID,
			Detail: l.Detail, IP: l.IP, At: model.LocalTime(l.CreatedAt)}
	})
}
