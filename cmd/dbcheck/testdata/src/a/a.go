package a

import "gorm.io/gorm"

func f(db *gorm.DB) error {
	var n int64
	db.Where("x = ?", 1).Take(&n) // want "the database call's error is not checked"
	_ = db.Count(&n).Error        // want "the database call's error is thrown away"
	if db.Count(&n); n == 0 {     // want "the database call's error is not checked"
		return nil
	}
	if err := db.Take(&n).Error; err != nil {
		return err
	}
	return db.Count(&n).Error
}
