package service

import (
	"context"
	"fmt"

	"careloop/model"
)

// Patients holds the patient's own profile use cases.
type Patients struct {
	db *model.DB
}

// NewPatients returns the profile use cases.
func NewPatients(db *model.DB) *Patients { return &Patients{db: db} }

// Me loads the calling patient.
func (s *Patients) Me(ctx context.Context, p Principal) (*model.Patient, error) {
	if !p.IsPatient() {
		return nil, model.ErrForbidden
	}
	var pt model.Patient
	if err := s.db.Conn(ctx).Where("id = ?", p.ID).Take(&pt).Error; err != nil {
		return nil, fmt.Errorf("load patient %d: %w", p.ID, model.NotFound(err))
	}
	return &pt, nil
}

// Staff loads the calling staff member.
func (s *Patients) Staff(ctx context.Context, p Principal) (*model.Staff, error) {
	if !p.IsStaff() {
		return nil, model.ErrForbidden
	}
	var st model.Staff
	if err := s.db.Conn(ctx).Where("id = ?", p.ID).Take(&st).Error; err != nil {
		return nil, fmt.Errorf("load staff %d: %w", p.ID, model.NotFound(err))
	}
	return &st, nil
}
