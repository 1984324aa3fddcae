package handler

import (
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"careloop/model"
	"careloop/service"
)

// bookingHandlers serves packages, slots and bookings to patients, and the
// catalogue, schedules and front desk to staff.
type bookingHandlers struct {
	b       *service.Bookings
	catalog *service.Catalog
	desk    *service.FrontDesk
}

func (h bookingHandlers) registerMP(rg *gin.RouterGroup) {
	rg.GET("/packages", h.packages)
	rg.GET("/packages/:id", h.pkg)
	rg.GET("/packages/:id/slots", h.slots)
	rg.POST("/bookings", h.book)
	rg.GET("/bookings", h.list)
	rg.GET("/bookings/:id", h.get)
	rg.POST("/bookings/:id/cancel", h.cancel)
	rg.POST("/bookings/:id/reschedule", h.reschedule)
}

func (h bookingHandlers) registerAdmin(rg *gin.RouterGroup) {
	catalog := allow(service.ActPackagesManage)
	schedule, desk := allow(service.ActScheduleManage), allow(service.ActBookingsDesk)
	rg.GET("/packages", allow(service.ActPackagesRead), h.allPackages)
	rg.POST("/packages", catalog, h.createPackage)
	rg.PUT("/packages/:id", catalog, h.updatePackage)
	rg.GET("/slots", allow(service.ActScheduleRead), h.staffSlots)
	rg.POST("/schedules", schedule, h.generate)
	rg.GET("/closed-days", allow(service.ActScheduleRead), h.closedDays)
	rg.POST("/closed-days", schedule, h.closeDay)
	rg.DELETE("/closed-days/:date", schedule, h.openDay)
	rg.GET("/bookings", desk, h.search)
	rg.POST("/bookings", desk, h.deskBook)
	rg.POST("/bookings/:id/cancel", desk, h.deskCancel)
	rg.POST("/bookings/:id/reschedule", desk, h.deskReschedule)
	rg.POST("/bookings/:id/check-in", desk, h.transition(model.BookingCheckedIn))
	rg.POST("/bookings/:id/complete", desk, h.transition(model.BookingCompleted))
	rg.POST("/bookings/:id/no-show", desk, h.transition(model.BookingNoShow))
	rg.POST("/bookings/:id/undo", desk, h.undo)
}

// PackageDTO is a checkup package.
type PackageDTO struct {
	ID          uint64   `json:"id"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Items       []string `json:"items"`
	PriceFen    int64    `json:"price_fen"`
	Gender      string   `json:"gender"`
	MinAge      int      `json:"min_age"`
	MaxAge      int      `json:"max_age"`
	Group       string   `json:"group"`
	Active      bool     `json:"active"`
	SortOrder   int      `json:"sort_order"`
}

func packageDTO(p *model.Package) PackageDTO {
	return PackageDTO{ID: p.ID, Name: p.Name, Description: p.Description, Items: service.PackageItems(p), PriceFen: p.PriceFen,
		Gender: p.Gender, MinAge: p.MinAge, MaxAge: p.MaxAge, Group: p.Group, Active: p.Active, SortOrder: p.SortOrder}
}

func (h bookingHandlers) packages(c *gin.Context) {
	ps, err := h.b.Packages(c.Request.Context())
	renderList(c, ps, err, packageDTO)
}

func (h bookingHandlers) pkg(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	p, err := h.b.Package(c.Request.Context(), id)
	renderOne(c, http.StatusOK, p, err, packageDTO)
}

// SlotDTO is a time period with its free seats.
type SlotDTO struct {
	ID        uint64 `json:"id"`
	Date      string `json:"date"`
	Start     string `json:"start"`
	End       string `json:"end"`
	Capacity  int    `json:"capacity"`
	Remaining int    `json:"remaining"`
}

func slotDTO(s *model.Slot) SlotDTO {
	return SlotDTO{ID: s.ID, Date: s.Date, Start: s.Start, End: s.End, Capacity: s.Capacity, Remaining: s.Remaining()}
}

func (h bookingHandlers) slots(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	ss, err := h.b.Slots(c.Request.Context(), id, c.Query("from"), c.Query("to"))
	renderList(c, ss, err, slotDTO)
}

// BookingDTO is a booking.
type BookingDTO struct {
	ID             uint64  `json:"id"`
	Status         string  `json:"status"`
	Code           string  `json:"code"`
	SlotID         uint64  `json:"slot_id"`
	PackageID      uint64  `json:"package_id"`
	PackageName    string  `json:"package_name"`
	FamilyMemberID *uint64 `json:"family_member_id"`
	PatientID      uint64  `json:"patient_id"`
	Date           string  `json:"date"`
	Start          string  `json:"start"`
	End            string  `json:"end"`
	PriceFen       int64   `json:"price_fen"`
	CreatedAt      string  `json:"created_at"`
	// PersonName and Phone (masked): who comes, for the front desk.
	PersonName string `json:"person_name,omitempty"`
	Phone      string `json:"phone,omitempty"`
}

func bookingDTO(v service.BookingView) BookingDTO {
	return BookingDTO{ID: v.ID, Status: v.Status, Code: v.Code, SlotID: v.SlotID, PackageID: v.PackageID, PackageName: v.PackageName,
		FamilyMemberID: v.FamilyMemberID, PatientID: v.PatientID, Date: v.Date, Start: v.Start, End: v.End, PriceFen: v.PriceFen,
		CreatedAt: model.LocalTime(v.CreatedAt), PersonName: v.PersonName, Phone: v.Phone}
}

// answerBooked answers a new booking (201), saying when it is the replay
// of one made before with the same idempotency key.
func (h bookingHandlers) answerBooked(c *gin.Context, b *model.Booking, created bool, err error) {
	if err != nil {
		fail(c, err)
		return
	}
	if !created {
		c.Header("Idempotent-Replayed", "true")
	}
	h.render(c, http.StatusCreated, *b)
}

// answerOne answers one booking (200), or records err.
func (h bookingHandlers) answerOne(c *gin.Context, b *model.Booking, err error) {
	if err != nil {
		fail(c, err)
		return
	}
	h.render(c, http.StatusOK, *b)
}

// render answers one booking with status, or (status 0) a whole list.
func (h bookingHandlers) render(c *gin.Context, status int, bs ...model.Booking) {
	h.renderPage(c, status, "", bs)
}

// renderPage answers bookings as render does, a list with its next page's
// cursor; staff see who comes.
func (h bookingHandlers) renderPage(c *gin.Context, status int, next string, bs []model.Booking) {
	vs, err := h.b.Views(c.Request.Context(), bs)
	if err == nil && principal(c).IsStaff() {
		err = h.desk.People(c.Request.Context(), principal(c), vs)
	}
	if err != nil {
		fail(c, err)
		return
	}
	if len(vs) == 1 && status != 0 {
		c.JSON(status, bookingDTO(vs[0]))
		return
	}
	items := make([]BookingDTO, 0, len(vs))
	for _, v := range vs {
		items = append(items, bookingDTO(v))
	}
	c.JSON(http.StatusOK, gin.H{"items": items, "next_cursor": next})
}

type bookRequest struct {
	PackageID      uint64  `json:"package_id" binding:"required"`
	SlotID         uint64  `json:"slot_id" binding:"required"`
	FamilyMemberID *uint64 `json:"family_member_id"`
	CouponID       *uint64 `json:"coupon_id"`
}

func (h bookingHandlers) book(c *gin.Context) {
	var req bookRequest
	if !bindJSON(c, &req) {
		return
	}
	b, created, err := h.b.Book(c.Request.Context(), principal(c), service.BookInput{
		PackageID: req.PackageID, SlotID: req.SlotID, FamilyMemberID: req.FamilyMemberID, IdempotencyKey: c.GetHeader("Idempotency-Key"),
		CouponID: req.CouponID,
	})
	h.answerBooked(c, b, created, err)
}

func (h bookingHandlers) list(c *gin.Context) {
	bs, err := h.b.List(c.Request.Context(), principal(c))
	if err != nil {
		fail(c, err)
		return
	}
	h.render(c, 0, bs...)
}

func (h bookingHandlers) get(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	b, err := h.b.Get(c.Request.Context(), principal(c), id)
	h.answerOne(c, b, err)
}

func (h bookingHandlers) cancel(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	b, err := h.b.Cancel(c.Request.Context(), principal(c), id)
	h.answerOne(c, b, err)
}

type rescheduleRequest struct {
	SlotID uint64 `json:"slot_id" binding:"required"`
}

func (h bookingHandlers) reschedule(c *gin.Context) {
	id, req, ok := idAndJSON[rescheduleRequest](c)
	if !ok {
		return
	}
	b, err := h.b.Reschedule(c.Request.Context(), principal(c), id, req.SlotID)
	h.answerOne(c, b, err)
}

func (h bookingHandlers) allPackages(c *gin.Context) {
	ps, err := h.catalog.AllPackages(c.Request.Context(), principal(c))
	renderList(c, ps, err, packageDTO)
}

type packageRequest struct {
	Name        string   `json:"name" binding:"required"`
	Description string   `json:"description"`
	Items       []string `json:"items"`
	PriceFen    int64    `json:"price_fen"`
	Gender      string   `json:"gender"`
	MinAge      int      `json:"min_age"`
	MaxAge      int      `json:"max_age"`
	Group       string   `json:"group"`
	Active      *bool    `json:"active"`
	SortOrder   int      `json:"sort_order"`
}

func (r packageRequest) input() service.PackageInput {
	active := r.Active == nil || *r.Active
	return service.PackageInput{Name: r.Name, Description: r.Description, Items: r.Items, PriceFen: r.PriceFen, Gender: r.Gender,
		MinAge: r.MinAge, MaxAge: r.MaxAge, Group: r.Group, Active: active, SortOrder: r.SortOrder}
}

func (h bookingHandlers) createPackage(c *gin.Context) {
	var req packageRequest
	if !bindJSON(c, &req) {
		return
	}
	p, err := h.catalog.CreatePackage(c.Request.Context(), principal(c), req.input())
	renderOne(c, http.StatusCreated, p, err, packageDTO)
}

func (h bookingHandlers) updatePackage(c *gin.Context) {
	id, req, ok := idAndJSON[packageRequest](c)
	if !ok {
		return
	}
	p, err := h.catalog.UpdatePackage(c.Request.Context(), principal(c), id, req.input())
	renderOne(c, http.StatusOK, p, err, packageDTO)
}

func (h bookingHandlers) staffSlots(c *gin.Context) {
	ss, err := h.catalog.SlotsBetween(c.Request.Context(), principal(c), c.Query("from"), c.Query("to"))
	if err != nil {
		fail(c, err)
		return
	}
	items := make([]gin.H, 0, len(ss))
	for i := range ss {
		items = append(items, gin.H{"id": ss[i].ID, "date": ss[i].Date, "start": ss[i].Start, "end": ss[i].End, "group": ss[i].Group,
			"capacity": ss[i].Capacity, "booked": ss[i].Booked, "remaining": ss[i].Remaining(), "closed": ss[i].Closed})
	}
	c.JSON(http.StatusOK, gin.H{"items": items, "next_cursor": ""})
}

type scheduleRequest struct {
	From     string                      `json:"from" binding:"required"`
	To       string                      `json:"to" binding:"required"`
	Group    string                      `json:"group"`
	Weekdays map[string][]service.Period `json:"weekdays" binding:"required"`
}

func (h bookingHandlers) generate(c *gin.Context) {
	var req scheduleRequest
	if !bindJSON(c, &req) {
		return
	}
	in := service.ScheduleInput{From: req.From, To: req.To, Group: req.Group, Weekdays: map[int][]service.Period{}}
	for k, ps := range req.Weekdays {
		wd, err := strconv.Atoi(k)
		if err != nil {
			fail(c, service.ErrBadSchedule)
			return
		}
		in.Weekdays[wd] = ps
	}
	n, err := h.catalog.Generate(c.Request.Context(), principal(c), in)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"slots": n})
}

type closeDayRequest struct {
	Date   string `json:"date" binding:"required"`
	Reason string `json:"reason"`
	// CancelBookings cancels the day's bookings (and tells their patients);
	// without it a day with bookings is refused.
	CancelBookings bool `json:"cancel_bookings"`
}

func (h bookingHandlers) closeDay(c *gin.Context) {
	var req closeDayRequest
	if !bindJSON(c, &req) {
		return
	}
	day, n, err := h.b.CloseDay(c.Request.Context(), principal(c), req.Date, req.Reason, req.CancelBookings)
	if err != nil {
		fail(c, err)
		return
	}
	c.JSON(http.StatusOK, gin.H{"date": day.Date, "reason": day.Reason, "cancelled_bookings": n})
}

func (h bookingHandlers) closedDays(c *gin.Context) {
	ds, err := h.catalog.ClosedDays(c.Request.Context(), principal(c))
	renderList(c, ds, err, func(d *model.ClosedDay) gin.H { return gin.H{"date": d.Date, "reason": d.Reason} })
}

func (h bookingHandlers) openDay(c *gin.Context) {
	noContent(c, h.b.OpenDay(c.Request.Context(), principal(c), c.Param("date")))
}

func (h bookingHandlers) search(c *gin.Context) {
	q := service.FrontDeskQuery{Date: c.Query("date"), Phone: c.Query("phone"), Code: c.Query("code"), Status: c.Query("status"), Q: c.Query("q")}
	q.SlotID, _ = strconv.ParseUint(c.Query("slot_id"), 10, 64)
	limit, ok := queryLimit(c)
	if !ok {
		return
	}
	q.Cursor, q.Limit = c.Query("cursor"), limit
	bs, next, err := h.desk.Search(c.Request.Context(), principal(c), q)
	if err != nil {
		fail(c, err)
		return
	}
	h.renderPage(c, 0, next, bs)
}

// undo takes back a check-in or a no-show on the booking's day.
func (h bookingHandlers) undo(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	b, err := h.desk.Undo(c.Request.Context(), principal(c), id)
	h.answerOne(c, b, err)
}

func (h bookingHandlers) transition(to string) gin.HandlerFunc {
	return func(c *gin.Context) {
		id, ok := idParam(c)
		if !ok {
			return
		}
		b, err := h.desk.Transition(c.Request.Context(), principal(c), id, to)
		if err != nil {
			fail(c, err)
			return
		}
		h.render(c, http.StatusOK, *b)
	}
}

// walkInRequest is a patient the front desk registers while booking.
type walkInRequest struct {
	Name      string `json:"name"`
	Phone     string `json:"phone"`
	Gender    string `json:"gender"`
	BirthDate string `json:"birth_date"`
	IDCard    string `json:"id_card"`
}

type deskBookRequest struct {
	PatientID uint64         `json:"patient_id"`
	Patient   *walkInRequest `json:"patient"`
	PackageID uint64         `json:"package_id" binding:"required"`
	SlotID    uint64         `json:"slot_id" binding:"required"`
}

// deskBook books for a patient at the front desk (a walk-in or a caller),
// registering them when new.
func (h bookingHandlers) deskBook(c *gin.Context) {
	var req deskBookRequest
	if !bindJSON(c, &req) {
		return
	}
	in := service.DeskBookInput{PatientID: req.PatientID, PackageID: req.PackageID, SlotID: req.SlotID, IdempotencyKey: c.GetHeader("Idempotency-Key")}
	if p := req.Patient; p != nil {
		in.New = &service.WalkInPatient{Name: p.Name, Phone: p.Phone, Gender: p.Gender, BirthDate: p.BirthDate, IDCard: p.IDCard}
	}
	b, created, err := h.desk.Book(c.Request.Context(), principal(c), in)
	h.answerBooked(c, b, created, err)
}

type deskCancelRequest struct {
	Reason string `json:"reason"`
}

func (h bookingHandlers) deskCancel(c *gin.Context) {
	id, ok := idParam(c)
	if !ok {
		return
	}
	var req deskCancelRequest // the reason is optional, and so is the body
	if c.Request.ContentLength != 0 && !bindJSON(c, &req) {
		return
	}
	b, err := h.desk.Cancel(c.Request.Context(), principal(c), id, req.Reason)
	h.answerOne(c, b, err)
}

func (h bookingHandlers) deskReschedule(c *gin.Context) {
	id, req, ok := idAndJSON[rescheduleRequest](c)
	if !ok {
		return
	}
	b, err := h.desk.Reschedule(c.Request.Context(), principal(c), id, req.SlotID)
	h.answerOne(c, b, err)
}
