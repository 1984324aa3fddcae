package model

import "time"

// Channel is a way in (渠道) that marketing tracks: a poster, a partner, a
// campaign. Its QR code (permanent, or temporary for a campaign) carries
// Scene; scans of it are ChannelScan rows, and a follower who subscribed
// through it keeps Scene as their first touch (Follower.Scene).
type Channel struct {
	ID        uint64 `gorm:"primaryKey"`
	Name      string `gorm:"size:64"`
	Purpose   string `gorm:"size:256"`
	Scene     string `gorm:"size:64;uniqueIndex"`
	Temporary bool
	Ticket    string `gorm:"size:256"`
	// QRContent is what the QR code encodes (WeChat's url for the ticket);
	// careloop draws the image from it.
	QRContent string `gorm:"size:256"`
	ExpiresAt *time.Time
	StaffID   uint64
	CreatedAt time.Time
}

// ChannelScan is one scan of a channel's QR code by an official-account
// follower: NewFollower when the scan made them follow (subscribe), else
// a follower's scan (SCAN).
type ChannelScan struct {
	ID          uint64 `gorm:"primaryKey"`
	ChannelID   uint64 `gorm:"index"`
	OpenID      string `gorm:"size:64;index"`
	NewFollower bool
	CreatedAt   time.Time
}
