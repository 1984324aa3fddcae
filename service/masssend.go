package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/coord"
	"careloop/model"
	"careloop/wxconfig"
)

// MassWeChat is what mass sends need of WeChat (wxconfig.Clients).
type MassWeChat interface {
	MassSend(ctx context.Context, openIDs []string, m wxconfig.MassMessage, clientMsgID string) (string, error)
	MassSendAll(ctx context.Context, tagID int, m wxconfig.MassMessage, clientMsgID string) (string, error)
	MassStatus(ctx context.Context, msgID string) (string, error)
}

// MassSends are mass sends (群发) to the official account's followers:
// prepared once into batches of at most MassBatchSize openids (followers
// who had their MassMonthlyLimit this month, or who do not follow, are
// skipped and counted), sent batch by batch within WeChat's 60 requests a
// minute under a clientmsgid each, so that a worker killed mid-campaign
// resumes without sending a batch twice, and ended by WeChat's
// MASSSENDJOBFINISH events or, when they do not come, by asking mass/get.
// Template messages never carry marketing: WeChat forbids it.
type MassSends struct {
	db       *model.DB
	wx       MassWeChat
	articles *Articles
	limiter  coord.Limiter
	audit    *Audit
	log      *slog.Logger
	now      func() time.Time
	// PollAfter is how long a batch may go without its event before
	// mass/get is asked (and asked again as often).
	PollAfter time.Duration
	// Lease is how long a worker keeps a mass send between batches.
	Lease time.Duration
	// BatchSize is 3 to 10,000 (WeChat's limit per call).
	BatchSize int
	wake      doorbell
}

// NewMassSends returns the mass-send use cases.
func NewMassSends(db *model.DB, wx MassWeChat, articles *Articles, limiter coord.Limiter, audit *Audit, log *slog.Logger, now func() time.Time) *MassSends {
	if now == nil {
		now = time.Now
	}
	return &MassSends{db: db, wx: wx, articles: articles, limiter: limiter, audit: audit, log: log, now: now,
		PollAfter: time.Minute, Lease: time.Minute, BatchSize: 10000, wake: newDoorbell()}
}

// Mass-send limits.
const (
	massPerMinute    = 60 // WeChat's requests a minute
	massMaxPatients  = 100000
	massTextMax      = 600
	massMaxAttempts  = 10
	massRateKey      = "wx:mass:minute:"
	massWindow       = time.Minute
	massPrepareChunk = 1000
)

// Mass-send errors.
var (
	ErrMassInvalid     = model.NewError(model.KindInvalid, "invalid_mass_send", "群发内容不正确")
	ErrMassNoRecipient = model.NewError(model.KindRule, "too_few_recipients", "群发至少需要 2 位关注公众号的接收人")
)

// MassTarget says whom a mass send reaches: every follower, the followers
// among the patients with a careloop tag, or among a list of patients.
type MassTarget struct {
	All        bool
	TagID      *uint64
	PatientIDs []uint64
}

// MassInput is a mass send as staff write it: an article or a text.
type MassInput struct {
	ArticleID *uint64
	Text      string
	Target    MassTarget
}

// Create queues a mass send; a worker prepares and sends it.
func (s *MassSends) Create(ctx context.Context, by Principal, in MassInput) (*model.MassSend, error) {
	if err := by.must(ActMassSend); err != nil {
		return nil, err
	}
	in.Text = strings.TrimSpace(in.Text)
	switch {
	case (in.ArticleID == nil) == (in.Text == ""):
		return nil, ErrMassInvalid.WithMessage("请选择一篇文章或填写文字（二者选一）")
	case utf8.RuneCountInString(in.Text) > massTextMax:
		return nil, ErrMassInvalid.WithMessage("文字不能超过 %d 个字", massTextMax)
	}
	t := in.Target
	kinds := 0
	m := model.MassSend{ArticleID: in.ArticleID, Text: in.Text, Status: model.MassQueued, StaffID: by.ID}
	if t.All {
		kinds++
		m.TargetKind = model.MassToAll
	}
	if t.TagID != nil {
		kinds++
		m.TargetKind, m.TagID = model.MassToTag, t.TagID
		if err := s.db.Conn(ctx).Where("id = ?", *t.TagID).Take(&model.Tag{}).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return nil, ErrMassInvalid.WithMessage("标签不存在")
			}
			return nil, err
		}
	}
	if len(t.PatientIDs) > 0 {
		kinds++
		if len(t.PatientIDs) > massMaxPatients {
			return nil, ErrMassInvalid.WithMessage("一次最多群发给 %d 位患者", massMaxPatients)
		}
		raw, _ := json.Marshal(t.PatientIDs)
		m.TargetKind, m.PatientIDs = model.MassToPatients, string(raw)
	}
	if kinds != 1 {
		return nil, ErrMassInvalid.WithMessage("请选择一个群发对象：全部关注者、一个标签或一组患者")
	}
	if in.ArticleID != nil {
		a, err := s.articles.get(ctx, *in.ArticleID)
		if err != nil {
			return nil, err
		}
		if a.CoverFileID == 0 {
			return nil, ErrArticleNoCover
		}
	}
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Create(&m).Error; err != nil {
			return fmt.Errorf("create mass send: %w", err)
		}
		return s.audit.Record(ctx, by, "mass_send.create", nil, fmt.Sprintf("mass send %d to %s", m.ID, m.TargetKind))
	})
	if err != nil {
		return nil, err
	}
	s.Wake()
	return &m, nil
}

// Get returns a mass send.
func (s *MassSends) Get(ctx context.Context, by Principal, id uint64) (*model.MassSend, error) {
	if err := by.must(ActMassSend); err != nil {
		return nil, err
	}
	var m model.MassSend
	if err := s.db.Conn(ctx).Where("id = ?", id).Take(&m).Error; err != nil {
		return nil, model.NotFound(err)
	}
	return &m, nil
}

// List lists mass sends, newest first.
func (s *MassSends) List(ctx context.Context, by Principal, cursor string, limit int) ([]model.MassSend, string, error) {
	if err := by.must(ActMassSend); err != nil {
		return nil, "", err
	}
	return page(s.db.Conn(ctx).Model(&model.MassSend{}).Omit("patient_ids"), "id", cursor, limit, func(m model.MassSend) uint64 { return m.ID })
}

// SetClock replaces the clock (tests stop time with it; not while Run runs).
func (s *MassSends) SetClock(now func() time.Time) { s.now = now }

// Wake makes the worker look for work now.
func (s *MassSends) Wake() { s.wake.ring() }

// Run prepares and sends mass sends and polls late results until ctx
// ends.
func (s *MassSends) Run(ctx context.Context) error {
	return s.wake.serve(ctx, time.Second, s.log, "mass sends", func(ctx context.Context) (bool, error) { return false, s.Work(ctx) })
}

// Work does one round: prepares the queued mass sends, sends what the
// minute's rate allows, and polls the batches whose event is late.
func (s *MassSends) Work(ctx context.Context) error {
	var queued []uint64
	if err := s.db.Conn(ctx).Model(&model.MassSend{}).Where("status = ?", model.MassQueued).Order("id").Limit(10).Pluck("id", &queued).Error; err != nil {
		return fmt.Errorf("queued mass sends: %w", err)
	}
	for _, id := range queued {
		if err := s.Prepare(ctx, id); err != nil {
			return err
		}
	}
	if err := s.sendSome(ctx); err != nil {
		return err
	}
	_, err := s.Poll(ctx)
	return err
}

// month is the calendar month of t in the center's time zone.
func month(t time.Time) string { return t.In(model.Shanghai).Format("2006-01") }

// recipient is a follower a mass send may reach.
type recipient struct {
	OpenID    string
	PatientID *uint64
	Count     *int // mass messages this month
}

// Prepare resolves a queued mass send's recipients into batches, skipping
// (and counting) those over the monthly limit and the patients who do not
// follow, and counts this send for each recipient — in one transaction, so
// that it happens once whoever runs it.
func (s *MassSends) Prepare(ctx context.Context, id uint64) error {
	mon := month(s.now())
	return s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		var m model.MassSend
		if err := db.Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ? AND status = ?", id, model.MassQueued).Take(&m).Error; err != nil {
			if errors.Is(err, gorm.ErrRecordNotFound) {
				return nil // prepared meanwhile
			}
			return fmt.Errorf("mass send %d: %w", id, err)
		}
		q := db.Table("followers AS f").Select("f.open_id, f.patient_id, r.count").
			Joins("LEFT JOIN mass_receipts r ON r.open_id = f.open_id AND r.month = ?", mon).Where("f.subscribed = ?", true)
		var wanted map[uint64]bool
		switch m.TargetKind {
		case model.MassToTag:
			q = q.Where("f.patient_id IN (SELECT patient_id FROM patient_tags WHERE tag_id = ?)", *m.TagID)
			var n int64
			if err := db.Model(&model.PatientTag{}).Where("tag_id = ?", *m.TagID).Count(&n).Error; err != nil {
				return err
			}
			wanted = map[uint64]bool{}
			m.SkippedNotFollow = int(n) // less those found following, below
		case model.MassToPatients:
			var ids []uint64
			_ = json.Unmarshal([]byte(m.PatientIDs), &ids)
			wanted = make(map[uint64]bool, len(ids))
			for _, pid := range ids {
				wanted[pid] = true
			}
			q = q.Where("f.patient_id IS NOT NULL")
			if len(ids) <= massPrepareChunk {
				q = q.Where("f.patient_id IN ?", ids)
			}
			m.SkippedNotFollow = len(wanted)
		}
		var rs []recipient
		if err := q.Order("f.open_id").Scan(&rs).Error; err != nil {
			return fmt.Errorf("recipients of mass send %d: %w", id, err)
		}
		var open []string
		seen := map[uint64]bool{}
		for _, r := range rs {
			if m.TargetKind == model.MassToPatients && (r.PatientID == nil || !wanted[*r.PatientID]) {
				continue
			}
			if r.PatientID != nil && wanted != nil && !seen[*r.PatientID] {
				seen[*r.PatientID] = true
				m.SkippedNotFollow--
			}
			if r.Count != nil && *r.Count >= model.MassMonthlyLimit {
				m.SkippedMonthly++
				continue
			}
			open = append(open, r.OpenID)
		}
		m.Total = len(open)
		var batches []model.MassBatch
		if m.TargetKind == model.MassToAll {
			batches = append(batches, model.MassBatch{MassSendID: id, Seq: 1, ToAll: true, Count: len(open)})
		} else {
			if len(open) < 2 {
				m.Status, m.LastError = model.MassFailed, ErrMassNoRecipient.Message
				now := s.now().UTC()
				m.FinishedAt = &now
				return db.Save(&m).Error
			}
			for i, part := range splitBatches(open, max(3, min(s.BatchSize, 10000))) {
				raw, _ := json.Marshal(part)
				batches = append(batches, model.MassBatch{MassSendID: id, Seq: i + 1, OpenIDs: string(raw), Count: len(part)})
			}
		}
		for i := range batches {
			b := &batches[i]
			// ≤ 64 bytes; unique per batch, the same however often it is sent.
			b.ClientMsgID, b.Status = fmt.Sprintf("careloop-mass-%d-%d", id, b.Seq), model.BatchPending
		}
		if err := db.CreateInBatches(batches, 1).Error; err != nil {
			return fmt.Errorf("batches of mass send %d: %w", id, err)
		}
		if err := s.countReceipts(ctx, open, mon); err != nil {
			return fmt.Errorf("count mass messages of the month: %w", err)
		}
		m.Status, m.Batches = model.MassSending, len(batches)
		return db.Save(&m).Error
	})
}

// splitBatches cuts ids into batches of at most size (at least 3), never
// leaving a batch of one (WeChat wants at least two openids a call).
func splitBatches(ids []string, size int) [][]string {
	var out [][]string
	for len(ids) > 0 {
		n := min(size, len(ids))
		if rest := len(ids) - n; rest == 1 {
			n-- // leave two for the last batch
		}
		out = append(out, ids[:n])
		ids = ids[n:]
	}
	return out
}

// countReceipts adds one mass message of month to each openid.
func (s *MassSends) countReceipts(ctx context.Context, openIDs []string, mon string) error {
	db := s.db.Conn(ctx)
	for start := 0; start < len(openIDs); start += massPrepareChunk {
		part := openIDs[start:min(start+massPrepareChunk, len(openIDs))]
		rows := make([]model.MassReceipt, len(part))
		for i, o := range part {
			rows[i] = model.MassReceipt{OpenID: o, Month: mon, Count: 1}
		}
		if err := db.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "open_id"}, {Name: "month"}},
			DoUpdates: clause.Assignments(map[string]any{"count": gorm.Expr("mass_receipts.count + 1")})}).Create(&rows).Error; err != nil {
			return err
		}
	}
	return nil
}

// sendSome claims one sending mass send (a lease, renewed per batch) and
// sends its pending batches, as many as the minute's rate allows.
func (s *MassSends) sendSome(ctx context.Context) error {
	now := s.now().UTC()
	var m model.MassSend
	err := s.db.Conn(ctx).Where("status = ? AND (lease_until IS NULL OR lease_until < ?)", model.MassSending, now).
		Where("id IN (SELECT mass_send_id FROM mass_batches WHERE status = ?)", model.BatchPending).Order("id").Take(&m).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("mass send to send: %w", err)
	}
	token := randomHex(8)
	res := s.db.Conn(ctx).Model(&model.MassSend{}).Where("id = ? AND claim_token = ? AND (lease_until IS NULL OR lease_until < ?)", m.ID, m.ClaimToken, now).
		Updates(map[string]any{"claim_token": token, "lease_until": now.Add(s.Lease)})
	if res.Error != nil {
		return fmt.Errorf("claim mass send %d: %w", m.ID, res.Error)
	}
	if res.RowsAffected == 0 {
		return nil // another worker has it
	}
	defer func() {
		if err := s.db.Conn(context.WithoutCancel(ctx)).Model(&model.MassSend{}).Where("id = ? AND claim_token = ?", m.ID, token).
			Update("lease_until", nil).Error; err != nil {
			s.log.Error("mass sends: release", "mass_send", m.ID, "err", err)
		}
	}()
	msg, err := s.message(ctx, &m)
	if err != nil {
		// What will not change by waiting (the article is gone or has no
		// cover, WeChat refuses its draft) fails the send; the rest waits.
		var werr *wxconfig.Error
		var merr *model.Error
		switch {
		case errors.As(err, &werr) && werr.Outcome() == wxconfig.OutcomeBadRequest:
			return s.failAll(ctx, &m, "文章无法提交到微信："+werr.Chinese())
		case errors.As(err, &merr):
			return s.failAll(ctx, &m, merr.Message)
		}
		return err
	}
	var batches []model.MassBatch
	if err := s.db.Conn(ctx).Where("mass_send_id = ? AND status = ?", m.ID, model.BatchPending).Order("seq").Find(&batches).Error; err != nil {
		return fmt.Errorf("batches of mass send %d: %w", m.ID, err)
	}
	for i := range batches {
		if ctx.Err() != nil {
			return nil
		}
		// Counted per calendar minute, shared by every instance.
		ok, _, err := s.limiter.Allow(ctx, massRateKey+s.now().UTC().Format("200601021504"), massPerMinute, massWindow)
		if err != nil {
			return fmt.Errorf("mass rate: %w", err)
		}
		if !ok {
			return nil // the minute's requests are used: the next round goes on
		}
		done, err := s.sendBatch(ctx, &m, &batches[i], msg)
		if err != nil || !done {
			return err
		}
		if err := s.db.Conn(ctx).Model(&model.MassSend{}).Where("id = ? AND claim_token = ?", m.ID, token).
			Update("lease_until", s.now().UTC().Add(s.Lease)).Error; err != nil {
			return err
		}
	}
	return nil
}

// message is what m sends: the article's draft, or its text.
func (s *MassSends) message(ctx context.Context, m *model.MassSend) (wxconfig.MassMessage, error) {
	if m.ArticleID == nil {
		return wxconfig.MassMessage{Text: m.Text}, nil
	}
	a, err := s.articles.get(ctx, *m.ArticleID)
	if err != nil {
		return wxconfig.MassMessage{}, err
	}
	mediaID, err := s.articles.draftFor(ctx, a)
	return wxconfig.MassMessage{MediaID: mediaID}, err
}

// sendBatch sends one batch. It reports whether the round may go on to the
// next batch (false: WeChat wants a pause).
func (s *MassSends) sendBatch(ctx context.Context, m *model.MassSend, b *model.MassBatch, msg wxconfig.MassMessage) (bool, error) {
	var msgID string
	var err error
	if b.ToAll {
		msgID, err = s.wx.MassSendAll(ctx, 0, msg, b.ClientMsgID)
	} else {
		var ids []string
		if jerr := json.Unmarshal([]byte(b.OpenIDs), &ids); jerr != nil {
			return true, s.endBatch(ctx, m.ID, b, map[string]any{"status": model.BatchFailed, "last_error": "批次数据损坏"})
		}
		msgID, err = s.wx.MassSend(ctx, ids, msg, b.ClientMsgID)
	}
	now := s.now().UTC()
	if err == nil {
		if err := s.db.Conn(ctx).Model(&model.MassBatch{}).Where("id = ? AND status = ?", b.ID, model.BatchPending).
			Updates(map[string]any{"status": model.BatchSent, "msg_id": msgID, "sent_at": now, "polled_at": now, "attempts": b.Attempts + 1}).Error; err != nil {
			return false, err
		}
		// Its result may have come already (a resend after a crash, or
		// an event faster than the write above).
		var early model.MassJobResult
		if err := s.db.Conn(ctx).Where("msg_id = ?", msgID).Take(&early).Error; err == nil {
			return true, s.MassFinished(ctx, wxconfig.MassResult{MsgID: msgID, Status: early.Status, Total: early.Total,
				Filtered: early.Filtered, Sent: early.Sent, Errors: early.Errors})
		} else if !errors.Is(err, gorm.ErrRecordNotFound) {
			return false, err
		}
		return true, nil
	}
	var werr *wxconfig.Error
	if !errors.As(err, &werr) {
		return false, err
	}
	switch werr.Outcome() {
	case wxconfig.OutcomeRetry, wxconfig.OutcomeUnknown, wxconfig.OutcomeRefreshToken, wxconfig.OutcomeMinuteLimit:
		// Sending again is harmless: the clientmsgid makes it one send.
		if b.Attempts+1 < massMaxAttempts {
			return false, s.db.Conn(ctx).Model(&model.MassBatch{}).Where("id = ?", b.ID).
				Updates(map[string]any{"attempts": b.Attempts + 1, "last_error": model.Truncate(werr.Chinese(), 500)}).Error
		}
	}
	return true, s.endBatch(ctx, m.ID, b, map[string]any{"status": model.BatchFailed, "attempts": b.Attempts + 1,
		"last_error": model.Truncate(werr.Chinese(), 500), "finished_at": now})
}

// endBatch records a batch's end and settles its mass send.
func (s *MassSends) endBatch(ctx context.Context, massID uint64, b *model.MassBatch, upd map[string]any) error {
	return s.db.InTx(ctx, func(ctx context.Context) error {
		// Batches end at once (their events come together): the mass
		// send's row lock makes each sum see the others' ends, taken
		// before the transaction's first plain read fixes its snapshot.
		var m model.MassSend
		if err := s.db.Conn(ctx).Clauses(clause.Locking{Strength: "UPDATE"}).Select("id").Where("id = ?", massID).Take(&m).Error; err != nil {
			return fmt.Errorf("lock mass send %d: %w", massID, err)
		}
		res := s.db.Conn(ctx).Model(&model.MassBatch{}).Where("id = ? AND status IN ?", b.ID, []string{model.BatchPending, model.BatchSent}).Updates(upd)
		if res.Error != nil || res.RowsAffected == 0 {
			return res.Error
		}
		return s.settle(ctx, massID)
	})
}

// settle sums a mass send's batches and ends it when they all have.
func (s *MassSends) settle(ctx context.Context, massID uint64) error {
	db := s.db.Conn(ctx)
	var sum struct {
		Filtered, Sent, Errors, Done, Failed, All int
	}
	if err := db.Model(&model.MassBatch{}).Where("mass_send_id = ?", massID).Select(
		"COALESCE(SUM(filtered),0) AS filtered, COALESCE(SUM(sent),0) AS sent, COALESCE(SUM(errors),0) AS errors, " +
			"COALESCE(SUM(CASE WHEN status = 'done' THEN 1 ELSE 0 END),0) AS done, " +
			"COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END),0) AS failed, COUNT(*) AS `all`").Scan(&sum).Error; err != nil {
		return fmt.Errorf("sum batches of mass send %d: %w", massID, err)
	}
	upd := map[string]any{"filtered": sum.Filtered, "sent": sum.Sent, "errors": sum.Errors, "batches_done": sum.Done + sum.Failed}
	if sum.Done+sum.Failed == sum.All {
		upd["status"], upd["finished_at"] = model.MassDone, s.now().UTC()
		if sum.Done == 0 {
			upd["status"] = model.MassFailed
			var last []string
			if err := db.Model(&model.MassBatch{}).Where("mass_send_id = ? AND status = ?", massID, model.BatchFailed).Order("seq DESC").Limit(1).
				Pluck("last_error", &last).Error; err != nil {
				return fmt.Errorf("why mass send %d failed: %w", massID, err)
			}
			if len(last) > 0 {
				upd["last_error"] = last[0]
			}
		}
	}
	return db.Model(&model.MassSend{}).Where("id = ?", massID).Updates(upd).Error
}

func (s *MassSends) failAll(ctx context.Context, m *model.MassSend, why string) error {
	return s.db.InTx(ctx, func(ctx context.Context) error {
		if err := s.db.Conn(ctx).Clauses(clause.Locking{Strength: "UPDATE"}).Select("id").Where("id = ?", m.ID).Take(&model.MassSend{}).Error; err != nil {
			return fmt.Errorf("lock mass send %d: %w", m.ID, err)
		}
		if err := s.db.Conn(ctx).Model(&model.MassBatch{}).Where("mass_send_id = ? AND status = ?", m.ID, model.BatchPending).
			Updates(map[string]any{"status": model.BatchFailed, "last_error": model.Truncate(why, 500), "finished_at": s.now().UTC()}).Error; err != nil {
			return err
		}
		return s.settle(ctx, m.ID)
	})
}

// MassFinished records WeChat's result of one batch (MASSSENDJOBFINISH, or
// polling). A result for a batch already ended, or not ours, is ignored.
func (s *MassSends) MassFinished(ctx context.Context, r wxconfig.MassResult) error {
	var b model.MassBatch
	err := s.db.Conn(ctx).Where("msg_id = ? AND status = ?", r.MsgID, model.BatchSent).Take(&b).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		// Not (yet) a batch's: keep it for the batch that will claim it.
		var n int64
		if err := s.db.Conn(ctx).Model(&model.MassBatch{}).Where("msg_id = ?", r.MsgID).Count(&n).Error; err != nil || n > 0 {
			return err // ended already
		}
		if err := s.db.Conn(ctx).Clauses(clause.OnConflict{DoNothing: true}).Create(&model.MassJobResult{MsgID: r.MsgID, Status: model.Truncate(r.Status, 60),
			Total: r.Total, Filtered: r.Filtered, Sent: r.Sent, Errors: r.Errors, ReceivedAt: s.now().UTC()}).Error; err != nil {
			return err
		}
		// The batch may have written its msg_id meanwhile, without
		// seeing this result: each side writes, then looks.
		err = s.db.Conn(ctx).Where("msg_id = ? AND status = ?", r.MsgID, model.BatchSent).Take(&b).Error
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("batch of msg %s: %w", r.MsgID, err)
	}
	status := model.BatchDone
	if strings.Contains(strings.ToLower(r.Status), "fail") || strings.HasPrefix(r.Status, "err") {
		status = model.BatchFailed
	}
	return s.endBatch(ctx, b.MassSendID, &b, map[string]any{"status": status, "wx_status": model.Truncate(r.Status, 60),
		"total": r.Total, "filtered": r.Filtered, "sent": r.Sent, "errors": r.Errors, "finished_at": s.now().UTC()})
}

// Poll asks mass/get about the batches whose event has not come within
// PollAfter. It returns how many it asked about.
func (s *MassSends) Poll(ctx context.Context) (int, error) {
	now := s.now().UTC()
	var bs []model.MassBatch
	if err := s.db.Conn(ctx).Select("id", "mass_send_id", "msg_id", "count", "polled_at").
		Where("status = ? AND polled_at < ?", model.BatchSent, now.Add(-s.PollAfter)).Order("polled_at").Limit(20).Find(&bs).Error; err != nil {
		return 0, fmt.Errorf("batches to poll: %w", err)
	}
	asked := 0
	for _, b := range bs {
		res := s.db.Conn(ctx).Model(&model.MassBatch{}).Where("id = ? AND polled_at = ?", b.ID, b.PolledAt).Update("polled_at", now)
		if res.Error != nil {
			return asked, res.Error
		}
		if res.RowsAffected == 0 {
			continue
		}
		asked++
		st, err := s.wx.MassStatus(ctx, b.MsgID)
		if err != nil {
			s.log.Warn("mass sends: mass get", "batch", b.ID, "err", err)
			continue
		}
		switch st {
		case "SENDING":
			continue
		case "SEND_SUCCESS", "DELETE":
			// mass/get tells no counts: the batch's size stands for them.
			err = s.endBatch(ctx, b.MassSendID, &b, map[string]any{"status": model.BatchDone, "wx_status": st + "（查询所得，无分项统计）",
				"total": b.Count, "sent": b.Count, "finished_at": now})
		default:
			err = s.endBatch(ctx, b.MassSendID, &b, map[string]any{"status": model.BatchFailed, "wx_status": st,
				"last_error": "微信群发失败（" + st + "）", "finished_at": now})
		}
		if err != nil {
			return asked, err
		}
	}
	return asked, nil
}
