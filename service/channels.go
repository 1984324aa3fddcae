package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	qrcode "github.com/skip2/go-qrcode"
	"gorm.io/gorm"

	"careloop/model"
	"careloop/wxconfig"
)

// ChannelWeChat is what channels need of WeChat (wxconfig.Clients).
type ChannelWeChat interface {
	CreateQRCode(ctx context.Context, scene string, expireSeconds int) (wxconfig.QRCode, error)
}

// Channels are marketing's ways in (渠道): each has a QR code of the
// official account carrying its scene; scans are recorded from the
// callback (a new follower's subscribe, a follower's SCAN), and the figures
// follow the people who came through it to their bookings.
type Channels struct {
	db    *model.DB
	wx    ChannelWeChat
	audit *Audit
	now   func() time.Time
}

// NewChannels returns the channel use cases.
func NewChannels(db *model.DB, wx ChannelWeChat, audit *Audit, now func() time.Time) *Channels {
	if now == nil {
		now = time.Now
	}
	return &Channels{db: db, wx: wx, audit: audit, now: now}
}

// ChannelTouchWindow is how long after a scan a booking counts as the
// channel's (any touch).
const ChannelTouchWindow = 30 * 24 * time.Hour

// Channel errors.
var ErrChannelInvalid = model.NewError(model.KindInvalid, "invalid_channel", "渠道信息不正确")

// ChannelInput is a channel as staff describe it; ExpireDays > 0 makes a
// temporary QR code (a campaign's, at most 30 days).
type ChannelInput struct {
	Name, Purpose string
	ExpireDays    int
}

// Create makes a channel and its QR code at WeChat.
func (s *Channels) Create(ctx context.Context, by Principal, in ChannelInput) (*model.Channel, error) {
	if err := by.must(ActChannels); err != nil {
		return nil, err
	}
	in.Name, in.Purpose = strings.TrimSpace(in.Name), strings.TrimSpace(in.Purpose)
	switch {
	case in.Name == "" || utf8.RuneCountInString(in.Name) > 32:
		return nil, ErrChannelInvalid.WithMessage("请填写渠道名称（不超过 32 字）")
	case utf8.RuneCountInString(in.Purpose) > 100:
		return nil, ErrChannelInvalid.WithMessage("用途不能超过 100 字")
	case in.ExpireDays < 0 || in.ExpireDays > 30:
		return nil, ErrChannelInvalid.WithMessage("临时二维码有效期为 1 到 30 天")
	}
	ch := model.Channel{Name: in.Name, Purpose: in.Purpose, Scene: "ch_" + randomHex(8), Temporary: in.ExpireDays > 0, StaffID: by.ID, CreatedAt: s.now().UTC()}
	qr, err := s.wx.CreateQRCode(ctx, ch.Scene, in.ExpireDays*86400)
	if err != nil {
		return nil, wechatRefusal(err)
	}
	ch.Ticket, ch.QRContent = qr.Ticket, qr.Content
	if ch.Temporary {
		exp := s.now().UTC().Add(time.Duration(qr.ExpireSeconds) * time.Second)
		ch.ExpiresAt = &exp
	}
	err = s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Create(&ch).Error; err != nil {
			return fmt.Errorf("create channel: %w", err)
		}
		return s.audit.Record(ctx, by, "channel.create", nil, "channel "+ch.Scene)
	})
	if err != nil {
		return nil, err
	}
	return &ch, nil
}

// ChannelStats are a channel's figures: scans, new followers, patients
// registered through it, and the bookings and revenue that followed — by
// first touch (the follower subscribed through it) and by any touch (a
// booking within 30 days of a scan).
type ChannelStats struct {
	model.Channel
	Scans, NewFollowers, Patients int
	FirstTouchBookings            int
	FirstTouchRevenueFen          int64
	AnyTouchBookings              int
	AnyTouchRevenueFen            int64
}

// List returns every channel with its figures, newest first.
func (s *Channels) List(ctx context.Context, by Principal) ([]ChannelStats, error) {
	if err := by.must(ActChannels); err != nil {
		return nil, err
	}
	var chs []model.Channel
	if err := s.db.Conn(ctx).Order("id DESC").Limit(200).Find(&chs).Error; err != nil {
		return nil, fmt.Errorf("channels: %w", err)
	}
	out := make([]ChannelStats, 0, len(chs))
	for _, ch := range chs {
		st, err := s.stats(ctx, ch)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// Get returns one channel.
func (s *Channels) Get(ctx context.Context, by Principal, id uint64) (*model.Channel, error) {
	if err := by.must(ActChannels); err != nil {
		return nil, err
	}
	var ch model.Channel
	if err := s.db.Conn(ctx).Where("id = ?", id).Take(&ch).Error; err != nil {
		return nil, model.NotFound(err)
	}
	return &ch, nil
}

// countedBookings are the bookings that count for revenue: not cancelled.
func countedBookings(db *gorm.DB) *gorm.DB {
	return db.Model(&model.Booking{}).Where("status <> ?", model.BookingCancelled)
}

func (s *Channels) stats(ctx context.Context, ch model.Channel) (ChannelStats, error) {
	db := s.db.Conn(ctx)
	st := ChannelStats{Channel: ch}
	var scans []model.ChannelScan
	if err := db.Where("channel_id = ?", ch.ID).Order("id").Find(&scans).Error; err != nil {
		return st, fmt.Errorf("scans of channel %d: %w", ch.ID, err)
	}
	st.Scans = len(scans)
	for _, sc := range scans {
		if sc.NewFollower {
			st.NewFollowers++
		}
	}
	// First touch: followers who subscribed through the channel.
	first := db.Model(&model.Follower{}).Select("patient_id").Where("scene = ? AND patient_id IS NOT NULL", ch.Scene)
	var n int64
	if err := db.Model(&model.Follower{}).Where("scene = ? AND patient_id IS NOT NULL", ch.Scene).Distinct("patient_id").Count(&n).Error; err != nil {
		return st, fmt.Errorf("patients of channel %d: %w", ch.ID, err)
	}
	st.Patients = int(n)
	var agg struct {
		N   int
		Fen int64
	}
	if err := countedBookings(db).Where("patient_id IN (?)", first).Select("COUNT(*) AS n, COALESCE(SUM(price_fen),0) AS fen").Scan(&agg).Error; err != nil {
		return st, fmt.Errorf("bookings of channel %d: %w", ch.ID, err)
	}
	st.FirstTouchBookings, st.FirstTouchRevenueFen = agg.N, agg.Fen
	// Any touch: a booking within 30 days after one of the booker's scans.
	if len(scans) == 0 {
		return st, nil
	}
	var links []model.Follower
	if err := db.Select("open_id", "patient_id").Where("open_id IN (?) AND patient_id IS NOT NULL",
		db.Model(&model.ChannelScan{}).Select("open_id").Where("channel_id = ?", ch.ID)).Find(&links).Error; err != nil {
		return st, fmt.Errorf("scanners of channel %d: %w", ch.ID, err)
	}
	patientOf := map[string]uint64{}
	for _, f := range links {
		patientOf[f.OpenID] = *f.PatientID
	}
	touches := map[uint64][]time.Time{}
	for _, sc := range scans {
		if pid, ok := patientOf[sc.OpenID]; ok {
			touches[pid] = append(touches[pid], sc.CreatedAt)
		}
	}
	if len(touches) == 0 {
		return st, nil
	}
	pids := make([]uint64, 0, len(touches))
	for pid := range touches {
		pids = append(pids, pid)
	}
	var bookings []model.Booking
	if err := countedBookings(db).Select("patient_id", "price_fen", "created_at").Where("patient_id IN ?", pids).Find(&bookings).Error; err != nil {
		return st, fmt.Errorf("bookings after channel %d: %w", ch.ID, err)
	}
	for _, b := range bookings {
		for _, at := range touches[b.PatientID] {
			if !b.CreatedAt.Before(at) && b.CreatedAt.Before(at.Add(ChannelTouchWindow)) {
				st.AnyTouchBookings++
				st.AnyTouchRevenueFen += b.PriceFen
				break
			}
		}
	}
	return st, nil
}

// QRImage draws a channel's QR code as a PNG of size pixels.
func (s *Channels) QRImage(ctx context.Context, by Principal, id uint64, size int) ([]byte, *model.Channel, error) {
	if err := by.must(ActChannels); err != nil {
		return nil, nil, err
	}
	ch, err := s.Get(ctx, by, id)
	if err != nil {
		return nil, nil, err
	}
	png, err := qrcode.Encode(ch.QRContent, qrcode.Medium, size)
	if err != nil {
		return nil, nil, fmt.Errorf("draw QR code of channel %d: %w", id, err)
	}
	return png, ch, nil
}

// Scanned records a scan of a QR code from the callback; a scene that is
// no channel's (another QR code of the account) is ignored.
func (s *Channels) Scanned(ctx context.Context, openID, scene string, newFollower bool) error {
	var ch model.Channel
	err := s.db.Conn(ctx).Select("id").Where("scene = ?", scene).Take(&ch).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("channel of scene %q: %w", scene, err)
	}
	return s.db.Conn(ctx).Create(&model.ChannelScan{ChannelID: ch.ID, OpenID: openID, NewFollower: newFollower, CreatedAt: s.now().UTC()}).Error
}
