package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"gorm.io/gorm/clause"

	"careloop/coord"
	"careloop/model"
	"careloop/notify"
)

// errLeaseLost: another worker took the campaign over, or it was paused
// or cancelled; the batch in hand is rolled back.
var errLeaseLost = errors.New("campaign lease lost")

// Wake makes Run look at once.
func (s *Campaigns) Wake() { s.wake.ring() }

// Run works on campaigns every Every and when woken, until ctx ends.
func (s *Campaigns) Run(ctx context.Context) error {
	return s.wake.serve(ctx, s.Every, s.log, "campaigns", s.Work)
}

// Work does one round: starts the campaigns whose time has come, prepares
// one campaign's recipients (all its batches, while its lease holds),
// hands prepared mass campaigns to the mass sender, ends the campaigns
// whose messages all ended, and attributes conversions. It reports whether
// it prepared anything.
func (s *Campaigns) Work(ctx context.Context) (bool, error) {
	now := s.now().UTC()
	// In a transaction: workers starting the same campaigns may deadlock on
	// MySQL's index locks, and InTx runs the loser again.
	if err := s.db.InTx(ctx, func(ctx context.Context) error {
		return s.db.Conn(ctx).Model(&model.Campaign{}).Where("status = ? AND start_at <= ?", model.CampaignScheduled, now).
			Updates(map[string]any{"status": model.CampaignPreparing, "started_at": now, "updated_at": now}).Error
	}); err != nil {
		return false, fmt.Errorf("start campaigns: %w", err)
	}
	did, err := s.prepareOne(ctx)
	if err != nil {
		return false, err
	}
	if err := s.follow(ctx); err != nil {
		return did, err
	}
	return did, s.attributeAll(ctx)
}

// prepareOne claims a campaign being prepared (one whose lease is free)
// and prepares it, batch by batch. Preparing takes a lock shared by every
// campaign, so that the fatigue cap is counted over every campaign's
// recipients without two campaigns racing past it.
func (s *Campaigns) prepareOne(ctx context.Context) (bool, error) {
	now := s.now().UTC()
	var c model.Campaign
	err := s.db.Conn(ctx).Where("status = ? AND (lease_until IS NULL OR lease_until < ?)", model.CampaignPreparing, now).Order("id").Limit(1).Find(&c).Error
	if err != nil || c.ID == 0 {
		return false, err
	}
	unlock, err := s.locker.TryLock(ctx, "campaign-prepare", s.Lease)
	if errors.Is(err, coord.ErrLockHeld) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("campaign prepare lock: %w", err)
	}
	defer unlock()
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	token := hex.EncodeToString(b)
	res := s.db.Conn(ctx).Model(&model.Campaign{}).Where("id = ? AND status = ? AND (lease_until IS NULL OR lease_until < ?)", c.ID, model.CampaignPreparing, now).
		Updates(map[string]any{"claim_token": token, "lease_until": now.Add(s.Lease)})
	if res.Error != nil || res.RowsAffected == 0 {
		return false, res.Error
	}
	c.ClaimToken = token
	if err := s.prepare(ctx, &c); err != nil {
		if errors.Is(err, errLeaseLost) {
			return true, nil
		}
		msg := err.Error()
		if e, ok := model.AsError(err); ok {
			msg = e.Message
		}
		if uerr := s.db.Conn(ctx).Model(&model.Campaign{}).Where("id = ? AND claim_token = ?", c.ID, token).
			Updates(map[string]any{"last_error": model.Truncate(msg, 500), "lease_until": nil}).Error; uerr != nil {
			return false, fmt.Errorf("prepare campaign %d: %w (and recording it: %v)", c.ID, err, uerr)
		}
		return false, fmt.Errorf("prepare campaign %d: %w", c.ID, err)
	}
	return true, nil
}

// prepare runs c's batches to the end, then moves it to sending.
func (s *Campaigns) prepare(ctx context.Context, c *model.Campaign) error {
	var m model.Segment
	if err := s.db.Conn(ctx).Where("id = ?", c.SegmentID).Take(&m).Error; err != nil {
		return fmt.Errorf("segment %d: %w", c.SegmentID, err)
	}
	seg, err := readSegment(m)
	if err != nil {
		return err
	}
	if seg.Health { // a segment edited to health data after the campaign was written
		return ErrHealthDataNotAllowed
	}
	where, args, err := s.segments.where(ctx, seg)
	if err != nil {
		return err
	}
	capLimit, err := s.fatigue(ctx)
	if err != nil {
		return err
	}
	// The members still to prepare, found once (the segment's query over a
	// million patients is the costly part; each batch then looks up only
	// its own patients). A worker that resumes finds them again.
	var members []uint64
	if err := s.segments.members(ctx, where, args).Where("p.id > ?", c.PreparedThrough).Order("p.id").Pluck("p.id", &members).Error; err != nil {
		return fmt.Errorf("members of segment %d: %w", c.SegmentID, err)
	}
	for start := 0; start < len(members); start += s.Batch {
		if err := s.prepareBatch(ctx, c, members[start:min(start+s.Batch, len(members))], capLimit); err != nil {
			return err
		}
	}
	res := s.db.Conn(ctx).Model(&model.Campaign{}).Where("id = ? AND claim_token = ? AND status = ?", c.ID, c.ClaimToken, model.CampaignPreparing).
		Updates(map[string]any{"status": model.CampaignSending, "claim_token": "", "lease_until": nil, "updated_at": s.now().UTC()})
	if res.Error != nil {
		return res.Error
	}
	if res.RowsAffected == 0 {
		return errLeaseLost
	}
	s.outbox.Wake(ctx)
	return nil
}

// variantOf splits patients between two variants by a hash of the campaign
// and the patient (stable across restarts).
func variantOf(campaignID, patientID uint64, n int) string {
	if n < 2 {
		return "A"
	}
	h := fnv.New32a()
	fmt.Fprintf(h, "%d:%d", campaignID, patientID)
	return string(rune('A' + int(h.Sum32()%uint32(n))))
}

// prepareBatch prepares the next batch of c's segment members in one
// transaction: each is queued (a notification, a coupon) or skipped with
// the reason, and the cursor moves on — all or nothing, guarded by the
// claim, so a batch is never prepared twice.
func (s *Campaigns) prepareBatch(ctx context.Context, c *model.Campaign, ids []uint64, fc FatigueCap) error {
	variants := Variants(c)
	now := s.now()
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		skip, err := s.skips(ctx, c, ids, fc, now)
		if err != nil {
			return err
		}
		recipients := make([]model.CampaignRecipient, len(ids))
		var notices []notify.Notice
		var queued []int
		for i, pid := range ids {
			recipients[i] = model.CampaignRecipient{CampaignID: c.ID, PatientID: pid, Variant: variantOf(c.ID, pid, len(variants)), Skip: skip[pid], CreatedAt: now.UTC()}
			if skip[pid] != "" {
				continue
			}
			queued = append(queued, i)
			if c.Channel == model.CampaignSubscribe {
				v := variants[recipients[i].Variant[0]-'A']
				notices = append(notices, notify.Notice{PatientID: pid, Reason: notify.ReasonCampaign, Occurrence: fmt.Sprint(c.ID), Params: v.Data,
					Page: trackedPage(c), TemplateID: c.TemplateID, DueAt: now})
			}
		}
		if len(notices) > 0 {
			rows, err := s.outbox.EnqueueRows(ctx, notices)
			if err != nil {
				return err
			}
			for k, i := range queued {
				id := rows[k].ID
				recipients[i].NotificationID = &id
			}
		}
		if c.CouponRewardID != nil && len(queued) > 0 {
			var r model.Reward
			if err := db.Where("id = ?", *c.CouponRewardID).Take(&r).Error; err != nil {
				return fmt.Errorf("coupon reward: %w", err)
			}
			coupons := make([]model.Coupon, len(queued))
			for k, i := range queued {
				coupons[k] = model.Coupon{PatientID: ids[i], RewardID: r.ID, Code: "Q" + newBookingCode(), RedeemKey: fmt.Sprintf("campaign:%d:%d", c.ID, ids[i]),
					ValueFen: r.CouponValueFen, Status: model.CouponUnused, ExpiresAt: now.AddDate(0, 0, max(c.GoalDays, 30)).UTC()}
			}
			if err := db.CreateInBatches(&coupons, 500).Error; err != nil {
				return fmt.Errorf("campaign coupons: %w", err)
			}
			for k, i := range queued {
				id := coupons[k].ID
				recipients[i].CouponID = &id
			}
		}
		if err := db.CreateInBatches(&recipients, 500).Error; err != nil {
			return fmt.Errorf("recipients: %w", err)
		}
		res := db.Model(&model.Campaign{}).Where("id = ? AND claim_token = ? AND status = ?", c.ID, c.ClaimToken, model.CampaignPreparing).
			Updates(map[string]any{"prepared_through": ids[len(ids)-1], "prepared": c.Prepared + len(ids), "lease_until": s.now().UTC().Add(s.Lease)})
		if res.Error != nil {
			return res.Error
		}
		if res.RowsAffected == 0 {
			return errLeaseLost
		}
		c.PreparedThrough, c.Prepared = ids[len(ids)-1], c.Prepared+len(ids)
		return nil
	})
	if err == nil {
		s.outbox.Wake(ctx)
	}
	return err
}

// trackedPage is the campaign's page with its id, so that the mini-program
// can say the message was opened (POST /api/mp/campaigns/{id}/opened).
func trackedPage(c *model.Campaign) string {
	sep := "?"
	if strings.Contains(c.Page, "?") {
		sep = "&"
	}
	return fmt.Sprintf("%s%scampaign=%d", c.Page, sep, c.ID)
}

// skips decides, for a batch of patients, who is skipped and why: no
// marketing consent, opted out, the channel (no credit for the template;
// not a follower, or WeChat's 4 mass messages this month), the fatigue cap.
func (s *Campaigns) skips(ctx context.Context, c *model.Campaign, ids []uint64, fc FatigueCap, now time.Time) (map[uint64]string, error) {
	db := s.db.Conn(ctx)
	out := make(map[uint64]string, len(ids))
	var consents []model.Consent
	if err := db.Select("patient_id", "granted").Where("patient_id IN ? AND kind = ?", ids, model.ConsentMarketing).Order("id").Find(&consents).Error; err != nil {
		return nil, fmt.Errorf("consents: %w", err)
	}
	agreed := map[uint64]bool{}
	for _, k := range consents { // the latest decision counts
		agreed[k.PatientID] = k.Granted
	}
	var optedOut []uint64
	if err := db.Model(&model.NotifyPreference{}).Where("patient_id IN ? AND category = ? AND opt_out = ?", ids, model.CategoryMarketing, true).
		Pluck("patient_id", &optedOut).Error; err != nil {
		return nil, fmt.Errorf("preferences: %w", err)
	}
	out2 := map[uint64]bool{}
	for _, id := range optedOut {
		out2[id] = true
	}
	reach := map[uint64]bool{}
	openIDs := map[uint64]string{}
	limited := map[uint64]bool{}
	if c.Channel == model.CampaignSubscribe {
		var holders []uint64
		if err := db.Table("subscribe_credits AS c").Joins("JOIN patients p ON p.id = c.patient_id").
			Where("c.patient_id IN ? AND c.template_id = ? AND c.credits > 0 AND p.open_id IS NOT NULL", ids, c.TemplateID).Pluck("c.patient_id", &holders).Error; err != nil {
			return nil, fmt.Errorf("credits: %w", err)
		}
		for _, id := range holders {
			reach[id] = true
		}
	} else {
		var fs []model.Follower
		if err := db.Select("open_id", "patient_id").Where("patient_id IN ? AND subscribed = ?", ids, true).Find(&fs).Error; err != nil {
			return nil, fmt.Errorf("followers: %w", err)
		}
		var opens []string
		for _, f := range fs {
			reach[*f.PatientID] = true
			openIDs[*f.PatientID] = f.OpenID
			opens = append(opens, f.OpenID)
		}
		if len(opens) > 0 {
			var full []string
			if err := db.Model(&model.MassReceipt{}).Where("open_id IN ? AND month = ? AND count >= ?", opens, now.In(model.Shanghai).Format("2006-01"), model.MassMonthlyLimit).
				Pluck("open_id", &full).Error; err != nil {
				return nil, fmt.Errorf("mass receipts: %w", err)
			}
			fullSet := map[string]bool{}
			for _, o := range full {
				fullSet[o] = true
			}
			for pid, o := range openIDs {
				limited[pid] = fullSet[o]
			}
		}
	}
	var past []model.CampaignRecipient
	if err := db.Select("patient_id", "created_at").Where("patient_id IN ? AND skip = '' AND created_at >= ? AND campaign_id <> ?", ids, now.AddDate(0, 0, -30).UTC(), c.ID).
		Find(&past).Error; err != nil {
		return nil, fmt.Errorf("fatigue: %w", err)
	}
	week, month := map[uint64]int{}, map[uint64]int{}
	weekAgo := now.AddDate(0, 0, -7)
	for _, r := range past {
		month[r.PatientID]++
		if r.CreatedAt.After(weekAgo) {
			week[r.PatientID]++
		}
	}
	for _, id := range ids {
		switch {
		case !agreed[id]:
			out[id] = model.SkipNoConsent
		case out2[id]:
			out[id] = model.SkipOptedOut
		case !reach[id] && c.Channel == model.CampaignSubscribe:
			out[id] = model.SkipNoCredit
		case !reach[id]:
			out[id] = model.SkipNotFollower
		case limited[id]:
			out[id] = model.SkipMassLimit
		case week[id] >= fc.PerWeek || month[id] >= fc.PerMonth:
			out[id] = model.SkipCapped
		}
	}
	return out, nil
}

// follow hands prepared mass campaigns to the mass sender (outside the
// quiet hours) and ends the campaigns whose messages all ended.
func (s *Campaigns) follow(ctx context.Context) error {
	var cs []model.Campaign
	if err := s.db.Conn(ctx).Where("status = ?", model.CampaignSending).Find(&cs).Error; err != nil {
		return fmt.Errorf("sending campaigns: %w", err)
	}
	for i := range cs {
		c := &cs[i]
		var open int64
		if c.Channel == model.CampaignSubscribe {
			if err := s.db.Conn(ctx).Model(&model.Notification{}).Where(campaignNotices+" AND status NOT IN ?", c.ID,
				[]string{model.NotifySent, model.NotifyDead, model.NotifyUndeliverable, model.NotifyCancelled}).Count(&open).Error; err != nil {
				return fmt.Errorf("campaign %d messages: %w", c.ID, err)
			}
		} else {
			if c.MassSendIDs == "" {
				if err := s.handToMass(ctx, c); err != nil {
					return err
				}
				continue
			}
			if err := s.db.Conn(ctx).Model(&model.MassSend{}).Where("id IN ? AND status NOT IN ?", massIDs(c), []string{model.MassDone, model.MassFailed}).
				Count(&open).Error; err != nil {
				return fmt.Errorf("campaign %d mass sends: %w", c.ID, err)
			}
		}
		if open == 0 {
			if err := s.db.Conn(ctx).Model(&model.Campaign{}).Where("id = ? AND status = ?", c.ID, model.CampaignSending).
				Updates(map[string]any{"status": model.CampaignDone, "finished_at": s.now().UTC()}).Error; err != nil {
				return fmt.Errorf("end campaign %d: %w", c.ID, err)
			}
		}
	}
	return nil
}

// handToMass creates c's mass sends (per variant, at most massMaxPatients
// each) once, under the campaign's row lock, outside the quiet hours.
func (s *Campaigns) handToMass(ctx context.Context, c *model.Campaign) error {
	if due := s.outbox.AfterQuiet(model.CategoryMarketing, s.now()); due.After(s.now()) {
		return nil
	}
	err := s.db.InTx(ctx, func(ctx context.Context) error {
		db := s.db.Conn(ctx)
		var cur model.Campaign
		if err := db.Clauses(clause.Locking{Strength: "UPDATE"}).Where("id = ?", c.ID).Take(&cur).Error; err != nil {
			return err
		}
		if cur.MassSendIDs != "" || cur.Status != model.CampaignSending {
			return nil
		}
		var ids []uint64
		for i, v := range Variants(&cur) {
			var pids []uint64
			if err := db.Model(&model.CampaignRecipient{}).Where("campaign_id = ? AND skip = '' AND variant = ?", c.ID, string(rune('A'+i))).
				Order("patient_id").Pluck("patient_id", &pids).Error; err != nil {
				return err
			}
			for start := 0; start < len(pids); start += massMaxPatients {
				part := pids[start:min(start+massMaxPatients, len(pids))]
				m, err := s.mass.Create(ctx, System, MassInput{ArticleID: v.ArticleID, Text: v.Text, Target: MassTarget{PatientIDs: part}})
				if err != nil {
					return err
				}
				ids = append(ids, m.ID)
			}
		}
		raw, _ := json.Marshal(ids)
		if len(ids) == 0 {
			raw = []byte("[]")
		}
		return db.Model(&model.Campaign{}).Where("id = ?", c.ID).Update("mass_send_ids", string(raw)).Error
	})
	if err != nil {
		return fmt.Errorf("campaign %d to mass sends: %w", c.ID, err)
	}
	s.mass.Wake()
	return nil
}

// attributeAll attributes conversions for the campaigns still within
// their goal's window.
func (s *Campaigns) attributeAll(ctx context.Context) error {
	var cs []model.Campaign
	if err := s.db.Conn(ctx).Where("status IN ? AND started_at IS NOT NULL", []string{model.CampaignSending, model.CampaignDone, model.CampaignCancelled}).Find(&cs).Error; err != nil {
		return fmt.Errorf("campaigns to attribute: %w", err)
	}
	now := s.now()
	for i := range cs {
		c := &cs[i]
		if now.After(c.StartedAt.AddDate(0, 0, c.GoalDays+31)) {
			continue // its window has long closed
		}
		if err := s.attribute(ctx, c); err != nil {
			return err
		}
		if err := s.db.Conn(ctx).Model(&model.Campaign{}).Where("id = ?", c.ID).Update("conversions_at", now.UTC()).Error; err != nil {
			return fmt.Errorf("campaign %d: %w", c.ID, err)
		}
	}
	return nil
}

// attribute records c's conversions: for a coupon goal, its coupons used;
// for a booking goal, a booking (of the package, if set) made within the
// window after the patient received the message, when c is the last
// campaign the patient received before booking (last touch).
func (s *Campaigns) attribute(ctx context.Context, c *model.Campaign) error {
	db := s.db.Conn(ctx)
	if err := s.articleOpens(ctx, c); err != nil {
		return err
	}
	if c.GoalKind == "coupon" {
		var rows []struct {
			PatientID uint64
			BookingID *uint64
			UsedAt    time.Time
		}
		if err := db.Table("campaign_recipients AS r").Select("r.patient_id, q.booking_id, q.updated_at AS used_at").
			Joins("JOIN coupons q ON q.id = r.coupon_id").Where("r.campaign_id = ? AND r.converted_at IS NULL AND q.status = ?", c.ID, model.CouponUsed).
			Scan(&rows).Error; err != nil {
			return fmt.Errorf("campaign %d coupons used: %w", c.ID, err)
		}
		for _, r := range rows {
			if err := db.Model(&model.CampaignRecipient{}).Where("campaign_id = ? AND patient_id = ? AND converted_at IS NULL", c.ID, r.PatientID).
				Updates(map[string]any{"converted_at": r.UsedAt.UTC(), "booking_id": r.BookingID}).Error; err != nil {
				return err
			}
		}
		return nil
	}
	// Driven by the bookings changed since the last attribution (a new
	// booking is one): a campaign's 200,000 recipients are never walked.
	since := c.StartedAt.UTC()
	if c.ConversionsAt != nil && c.ConversionsAt.Add(-visitsOverlap).After(since) {
		since = c.ConversionsAt.Add(-visitsOverlap).UTC()
	}
	q := db.Table("bookings AS b").Select("r.patient_id AS patient_id, r.created_at AS prepared_at, n.sent_at AS sent_at, b.id AS booking_id, b.created_at AS booked_at").
		Joins("JOIN campaign_recipients r ON r.campaign_id = ? AND r.patient_id = b.patient_id", c.ID).Joins("LEFT JOIN notifications n ON n.id = r.notification_id").
		Where("b.updated_at >= ? AND b.created_at >= ? AND b.status <> ? AND r.skip = '' AND r.converted_at IS NULL",
			since, c.StartedAt.UTC(), model.BookingCancelled)
	if c.GoalPackageID != nil {
		q = q.Where("b.package_id = ?", *c.GoalPackageID)
	}
	var cands []struct {
		PatientID  uint64
		PreparedAt time.Time
		SentAt     *time.Time
		BookingID  uint64
		BookedAt   time.Time
	}
	if err := q.Order("b.created_at").Scan(&cands).Error; err != nil {
		return fmt.Errorf("campaign %d bookings: %w", c.ID, err)
	}
	if len(cands) == 0 {
		return nil
	}
	pids := make([]uint64, 0, len(cands))
	for _, x := range cands {
		pids = append(pids, x.PatientID)
	}
	var others []struct {
		PatientID  uint64
		Channel    string
		PreparedAt time.Time
		SentAt     *time.Time
	}
	if err := db.Table("campaign_recipients AS r").Select("r.patient_id AS patient_id, c.channel AS channel, r.created_at AS prepared_at, n.sent_at AS sent_at").
		Joins("JOIN campaigns c ON c.id = r.campaign_id").Joins("LEFT JOIN notifications n ON n.id = r.notification_id").
		Where("r.patient_id IN ? AND r.skip = '' AND r.campaign_id <> ?", pids, c.ID).Scan(&others).Error; err != nil {
		return fmt.Errorf("campaign %d other touches: %w", c.ID, err)
	}
	received := func(channel string, prepared time.Time, sent *time.Time) (time.Time, bool) {
		if channel == model.CampaignSubscribe {
			if sent == nil {
				return time.Time{}, false
			}
			return *sent, true
		}
		return prepared, true
	}
	done := map[uint64]bool{}
	for _, x := range cands {
		if done[x.PatientID] {
			continue
		}
		at, ok := received(c.Channel, x.PreparedAt, x.SentAt)
		if !ok || x.BookedAt.Before(at) || x.BookedAt.After(at.AddDate(0, 0, c.GoalDays)) {
			continue
		}
		later := false
		for _, o := range others {
			if o.PatientID != x.PatientID {
				continue
			}
			if t, ok := received(o.Channel, o.PreparedAt, o.SentAt); ok && t.After(at) && !t.After(x.BookedAt) {
				later = true // a later campaign reached them before they booked
				break
			}
		}
		if later {
			continue
		}
		done[x.PatientID] = true
		if err := db.Model(&model.CampaignRecipient{}).Where("campaign_id = ? AND patient_id = ? AND converted_at IS NULL", c.ID, x.PatientID).
			Updates(map[string]any{"converted_at": x.BookedAt.UTC(), "booking_id": x.BookingID}).Error; err != nil {
			return fmt.Errorf("campaign %d conversion: %w", c.ID, err)
		}
	}
	return nil
}

// articleOpens marks as opened the recipients of a mass send of an article
// who read the article after it was sent to them.
func (s *Campaigns) articleOpens(ctx context.Context, c *model.Campaign) error {
	if c.Channel != model.CampaignMass {
		return nil
	}
	var articles []uint64
	for _, v := range Variants(c) {
		if v.ArticleID != nil {
			articles = append(articles, *v.ArticleID)
		}
	}
	if len(articles) == 0 {
		return nil
	}
	var rows []struct {
		PatientID uint64
		ReadAt    time.Time
	}
	if err := s.db.Conn(ctx).Table("article_reads AS a").Select("r.patient_id AS patient_id, a.last_at AS read_at").
		Joins("JOIN campaign_recipients r ON r.campaign_id = ? AND r.patient_id = a.patient_id", c.ID).
		Where("a.article_id IN ? AND r.skip = '' AND r.opened_at IS NULL AND a.last_at >= r.created_at", articles).
		Scan(&rows).Error; err != nil {
		return fmt.Errorf("campaign %d article reads: %w", c.ID, err)
	}
	for _, r := range rows {
		if err := s.db.Conn(ctx).Model(&model.CampaignRecipient{}).Where("campaign_id = ? AND patient_id = ? AND opened_at IS NULL", c.ID, r.PatientID).
			Update("opened_at", r.ReadAt.UTC()).Error; err != nil {
			return fmt.Errorf("campaign %d opened: %w", c.ID, err)
		}
	}
	return nil
}
