package service

import (
	"context"
	"strings"
	"time"

	"careloop/model"
)

// Errors of staff management.
var (
	ErrStaffExists = model.NewError(model.KindConflict, "staff_exists", "用户名已存在")
	ErrBadStaff    = model.NewError(model.KindRule, "invalid_staff", "用户名、角色或密码（至少 8 位）不正确")
)

// Staff manages staff accounts.
type Staff struct {
	db    *model.DB
	audit *Audit
	now   func() time.Time
}

// NewStaff returns the staff-account use cases.
func NewStaff(db *model.DB, audit *Audit, now func() time.Time) *Staff {
	if now == nil {
		now = time.Now
	}
	return &Staff{db: db, audit: audit, now: now}
}

// Me loads the calling staff member.
func (s *Staff) Me(ctx context.Context, p Principal) (*model.Staff, error) {
	var st model.Staff
	if err := s.db.Conn(ctx).Where("id = ?", p.ID).Take(&st).Error; err != nil {
		return nil, model.NotFound(err)
	}
	return &st, nil
}

// List returns every staff account.
func (s *Staff) List(ctx context.Context, by Principal) ([]model.Staff, error) {
	if err := by.must(ActStaffManage); err != nil {
		return nil, err
	}
	var out []model.Staff
	return out, s.db.Conn(ctx).Order("id").Find(&out).Error
}

// StaffInput creates or changes an account; empty fields stay as they are
// on change.
type StaffInput struct {
	Username, Name, Role, Password string
	Disabled                       *bool
}

// Create adds an account.
func (s *Staff) Create(ctx context.Context, by Principal, in StaffInput) (*model.Staff, error) {
	if err := by.must(ActStaffManage); err != nil {
		return nil, err
	}
	in.Username = strings.TrimSpace(in.Username)
	if in.Username == "" || len(in.Username) > 64 || !model.ValidRole(in.Role) || len(in.Password) < 8 {
		return nil, ErrBadStaff
	}
	hash, err := HashPassword(in.Password)
	if err != nil {
		return nil, err
	}
	st := model.Staff{Username: in.Username, Name: model.Truncate(in.Name, 32), Role: in.Role, PasswordHash: hash}
	err = s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Create(&st).Error; err != nil {
			if model.IsDuplicate(err) {
				return ErrStaffExists
			}
			return err
		}
		return s.audit.Record(ctx, by, AuditStaffChange, nil, "create "+st.Username+" as "+st.Role)
	})
	if err != nil {
		return nil, err
	}
	return &st, nil
}

// Update changes role, name, password or the disabled flag. Disabling an
// account ends its sessions at once.
func (s *Staff) Update(ctx context.Context, by Principal, id uint64, in StaffInput) (*model.Staff, error) {
	if err := by.must(ActStaffManage); err != nil {
		return nil, err
	}
	upd := map[string]any{}
	if in.Role != "" {
		if !model.ValidRole(in.Role) {
			return nil, ErrBadStaff
		}
		upd["role"] = in.Role
	}
	if in.Name != "" {
		upd["name"] = model.Truncate(in.Name, 32)
	}
	if in.Password != "" {
		if len(in.Password) < 8 {
			return nil, ErrBadStaff
		}
		h, err := HashPassword(in.Password)
		if err != nil {
			return nil, err
		}
		upd["password_hash"] = h
	}
	now := s.now()
	if in.Disabled != nil {
		if *in.Disabled {
			if id == by.ID {
				return nil, model.NewError(model.KindRule, "cannot_disable_self", "不能停用自己的账号")
			}
			upd["disabled_at"] = now
		} else {
			upd["disabled_at"] = nil
		}
	}
	var st model.Staff
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		if len(upd) > 0 {
			res := db.Model(&model.Staff{}).Where("id = ?", id).Updates(upd)
			if res.Error != nil {
				return res.Error
			}
		}
		if err := db.Where("id = ?", id).Take(&st).Error; err != nil {
			return model.NotFound(err)
		}
		switch {
		case in.Disabled != nil && *in.Disabled:
			if err := revokeSessions(ctx, s.db, model.SubjectStaff, id, now); err != nil {
				return err
			}
		case in.Password != "":
			// A new password ends every session of the old one, except the
			// one that changed it when it is the person themself.
			keep := ""
			if by.IsStaff() && by.ID == id {
				keep = by.SessionID
			}
			if err := revokeSessionsExcept(ctx, s.db, model.SubjectStaff, id, keep, now); err != nil {
				return err
			}
		}
		return s.audit.Record(ctx, by, AuditStaffChange, nil, "update "+st.Username)
	})
	if err != nil {
		return nil, err
	}
	return &st, nil
}
