package service

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm/clause"

	"careloop/model"
)

// Errors of the catalogue and schedules.
var (
	ErrBadPackage  = model.NewError(model.KindRule, "invalid_package", "套餐名称、价格、性别限制或年龄范围不正确")
	ErrBadSchedule = model.NewError(model.KindRule, "invalid_schedule", "排班设置不正确：日期 YYYY-MM-DD（最多 92 天），时段 HH:MM，容量为正数")
)

// PackageInput describes a package.
type PackageInput struct {
	Name, Description, Gender, Group string
	Items                            []string
	PriceFen                         int64
	MinAge, MaxAge, SortOrder        int
	Active                           bool
}

// Catalog is staff management of packages and schedules.
type Catalog struct {
	db  *model.DB
	now func() time.Time
}

// NewCatalog returns the catalogue use cases (now: time.Now when nil).
func NewCatalog(db *model.DB, now func() time.Time) *Catalog {
	if now == nil {
		now = time.Now
	}
	return &Catalog{db: db, now: now}
}

func (in PackageInput) model() (model.Package, error) {
	if err := model.CheckAll(model.BoundValue{Bound: model.BoundPriceFen, V: in.PriceFen}, model.BoundValue{Bound: model.BoundMinAge, V: int64(in.MinAge)},
		model.BoundValue{Bound: model.BoundMaxAge, V: int64(in.MaxAge)}, model.BoundValue{Bound: model.BoundSortOrder, V: int64(in.SortOrder)}); err != nil {
		return model.Package{}, err
	}
	in.Name = strings.TrimSpace(in.Name)
	if in.Gender == "" {
		in.Gender = "any"
	}
	if in.Name == "" || utf8.RuneCountInString(in.Name) > 64 ||
		(in.Gender != "any" && in.Gender != "male" && in.Gender != "female") ||
		(in.MaxAge > 0 && in.MaxAge < in.MinAge) {
		return model.Package{}, ErrBadPackage
	}
	items, _ := json.Marshal(in.Items)
	return model.Package{Name: in.Name, Description: in.Description, Items: string(items), PriceFen: in.PriceFen,
		Gender: in.Gender, MinAge: in.MinAge, MaxAge: in.MaxAge, Group: in.Group, Active: in.Active, SortOrder: in.SortOrder}, nil
}

// AllPackages lists every package, active or not.
func (c *Catalog) AllPackages(ctx context.Context, by Principal) ([]model.Package, error) {
	if err := by.must(ActPackagesRead); err != nil {
		return nil, err
	}
	var out []model.Package
	return out, c.db.Conn(ctx).Order("sort_order, id").Find(&out).Error
}

// CreatePackage adds a package.
func (c *Catalog) CreatePackage(ctx context.Context, by Principal, in PackageInput) (*model.Package, error) {
	if err := by.must(ActPackagesManage); err != nil {
		return nil, err
	}
	p, err := in.model()
	if err != nil {
		return nil, err
	}
	return &p, c.db.Conn(ctx).Create(&p).Error
}

// UpdatePackage replaces a package's description; bookings keep the price
// they were made at.
func (c *Catalog) UpdatePackage(ctx context.Context, by Principal, id uint64, in PackageInput) (*model.Package, error) {
	if err := by.must(ActPackagesManage); err != nil {
		return nil, err
	}
	p, err := in.model()
	if err != nil {
		return nil, err
	}
	res := c.db.Conn(ctx).Model(&model.Package{}).Where("id = ?", id).Select("name", "description", "items", "price_fen", "gender",
		"min_age", "max_age", "slot_group", "active", "sort_order").Updates(&p)
	if res.Error != nil {
		return nil, res.Error
	}
	if res.RowsAffected == 0 {
		n, err := model.Count(c.db.Conn(ctx).Model(&model.Package{}).Where("id = ?", id))
		if err != nil {
			return nil, fmt.Errorf("save package %d: %w", id, err)
		}
		if n == 0 {
			return nil, model.ErrNotFound
		}
	}
	p.ID = id
	return &p, nil
}

// Period is one slot of a weekday template.
type Period struct {
	Start    string `json:"start"`
	End      string `json:"end"`
	Capacity int    `json:"capacity"`
}

// ScheduleInput generates slots from a weekday template over a date range.
type ScheduleInput struct {
	From, To string
	Group    string
	// Weekdays maps 0 (Sunday) … 6 (Saturday) to the day's periods.
	Weekdays map[int][]Period
}

// Generate creates the template's slots; a slot that exists keeps its
// bookings and gets the template's capacity, never below what is booked.
func (c *Catalog) Generate(ctx context.Context, by Principal, in ScheduleInput) (int, error) {
	if err := by.must(ActScheduleManage); err != nil {
		return 0, err
	}
	from, err1 := time.Parse(time.DateOnly, in.From)
	to, err2 := time.Parse(time.DateOnly, in.To)
	if err1 != nil || err2 != nil || to.Before(from) || to.Sub(from) > 92*24*time.Hour || len(in.Weekdays) == 0 {
		return 0, ErrBadSchedule
	}
	for wd, ps := range in.Weekdays {
		if wd < 0 || wd > 6 {
			return 0, ErrBadSchedule
		}
		for _, p := range ps {
			if err := model.BoundCapacity.Check(int64(p.Capacity)); err != nil {
				return 0, err
			}
			s, e1 := time.Parse("15:04", p.Start)
			e, e2 := time.Parse("15:04", p.End)
			if e1 != nil || e2 != nil || !e.After(s) {
				return 0, ErrBadSchedule
			}
		}
	}
	var slots []model.Slot
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		for _, p := range in.Weekdays[int(d.Weekday())] {
			slots = append(slots, model.Slot{Date: d.Format(time.DateOnly), Start: p.Start, End: p.End, Group: in.Group, Capacity: p.Capacity})
		}
	}
	if len(slots) == 0 {
		return 0, nil
	}
	err := c.db.InTx(ctx, func(ctx context.Context) error {
		for _, sl := range slots {
			err := c.db.Conn(ctx).Clauses(clause.OnConflict{
				Columns:   []clause.Column{{Name: "slot_group"}, {Name: "date"}, {Name: "start"}},
				DoUpdates: clause.Assignments(map[string]any{"end": sl.End, "capacity": clause.Expr{SQL: capacityExpr(c.db.Dialect()), Vars: []any{sl.Capacity}}}),
			}).Create(&sl).Error
			if err != nil {
				return fmt.Errorf("slot %s %s: %w", sl.Date, sl.Start, err)
			}
		}
		return nil
	})
	return len(slots), err
}

// capacityExpr keeps a regenerated slot's capacity at least what is booked.
func capacityExpr(dialect string) string {
	if dialect == "mysql" {
		return "GREATEST(?, booked)"
	}
	return "MAX(?, booked)"
}

// SlotsBetween lists every slot (all groups) between two dates, for staff.
func (c *Catalog) SlotsBetween(ctx context.Context, by Principal, from, to string) ([]model.Slot, error) {
	if err := by.must(ActScheduleRead); err != nil {
		return nil, err
	}
	var out []model.Slot
	return out, c.db.Conn(ctx).Where("date >= ? AND date <= ?", from, to).Order("date, slot_group, start").Limit(5000).Find(&out).Error
}

// ClosedDays lists the closed days from today on (Asia/Shanghai), soonest
// first.
func (c *Catalog) ClosedDays(ctx context.Context, by Principal) ([]model.ClosedDay, error) {
	if err := by.must(ActScheduleRead); err != nil {
		return nil, err
	}
	today := c.now().In(model.Shanghai).Format(time.DateOnly)
	var out []model.ClosedDay
	return out, c.db.Conn(ctx).Where("date >= ?", today).Order("date").Limit(366).Find(&out).Error
}
