package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"

	"careloop/model"
	"careloop/wxconfig"
)

// sendError is what the dispatcher needs to know of a failed send
// (wxconfig.Error satisfies it).
type sendError interface {
	Outcome() wxconfig.Outcome
	// Chinese says what went wrong for staff, with the errcode.
	Chinese() string
}

// staffReason is err as staff read it in last_error: WeChat's answer in
// Chinese with its errcode, anything else as an internal error.
func staffReason(err error) string {
	var se sendError
	if errors.As(err, &se) {
		return se.Chinese()
	}
	return "内部错误（将重试）：" + model.Truncate(err.Error(), 200)
}

// deliver takes one claimed row to a final or rescheduled state.
func (d *Dispatcher) deliver(ctx context.Context, n *model.Notification, rc recipient) {
	if err := d.deliverErr(ctx, n, rc); err != nil {
		d.log.Error("deliver notification", "id", n.ID, "err", err)
	}
}

func (d *Dispatcher) deliverErr(ctx context.Context, n *model.Notification, rc recipient) error {
	r, ok := d.cfg.reason(n.Reason)
	if !ok {
		return d.finish(ctx, n, model.NotifyDead, "未配置此类通知："+n.Reason)
	}
	if why := rc.cancelReason(n); why != "" {
		return d.finish(ctx, n, model.NotifyCancelled, why)
	}
	var err error
	if due := d.cfg.afterQuiet(n.Category, d.now()); due.After(d.now()) {
		return d.reschedule(ctx, n, due, "免打扰时段，稍后发送")
	}
	var params map[string]string
	_ = json.Unmarshal([]byte(n.Params), &params)
	var notes []string
	var heldUntil time.Time
	noticeChecked := false
	for _, ch := range r.Channels {
		if r.ChooseTemplate && ch.Channel == ChannelSubscribe {
			if ch.TemplateID != n.TemplateID {
				continue // the notice chose another of the reason's templates
			}
			if ch.Fields == nil { // the notice's params are the data
				ch.Fields = make(map[string]string, len(params))
				for k := range params {
					ch.Fields[k] = k
				}
			}
		}
		api := apiOf(ch.Channel)
		if within := time.Duration(r.NoticeOnceMinutes) * time.Minute; within > 0 && ch.Channel != ChannelCustomer && !noticeChecked {
			// Falling back to a notice: one is enough while the patient has
			// not looked (the reply itself is in the mini-program).
			noticeChecked = true
			if at, found := d.recentNotice(ctx, n, within); found {
				return d.finish(ctx, n, model.NotifyCancelled, strings.Join(append(notes,
					"同类通知已于 "+at.In(model.Shanghai).Format("15:04")+" 发出，不再重复"), "; "))
			}
		}
		var to string
		switch ch.Channel {
		case ChannelSubscribe:
			if rc.openID == "" {
				notes = append(notes, "订阅消息：患者没有小程序 openid")
				continue
			}
			if !ch.LongTerm {
				if rc.credits[ch.TemplateID] <= 0 {
					// Known empty when the batch was loaded: no write needed.
					notes = append(notes, "订阅消息：患者未订阅此消息")
					continue
				}
				ok, err := d.takeCredit(ctx, n.PatientID, ch.TemplateID)
				if err != nil {
					return d.retry(ctx, n, "订阅次数："+staffReason(err), false)
				}
				if !ok {
					notes = append(notes, "订阅消息：患者未订阅此消息")
					continue
				}
			}
			to = rc.openID
		case ChannelOATemplate:
			if rc.oaOpenID == "" {
				notes = append(notes, "模板消息：患者未关注公众号")
				continue
			}
			to = rc.oaOpenID
		case ChannelCustomer:
			if rc.oaOpenID == "" {
				notes = append(notes, "客服消息：患者未关注公众号")
				continue
			}
			if !rc.window {
				notes = append(notes, "客服消息：已超出 48 小时时限")
				continue
			}
			ok, err := d.takeWindow(ctx, rc.oaOpenID)
			if err != nil {
				return d.retry(ctx, n, "客服消息时限："+staffReason(err), false)
			}
			if !ok {
				notes = append(notes, "客服消息：时限已过或 5 条已用完")
				continue
			}
			to = rc.oaOpenID
		default:
			notes = append(notes, "未知渠道 "+ch.Channel)
			continue
		}
		if until, held := d.held(ctx, api); held {
			d.giveBack(ctx, n, ch, to)
			if heldUntil.IsZero() || until.Before(heldUntil) {
				heldUntil = until
			}
			notes = append(notes, api+"：已达每日限额")
			continue
		}
		var data map[string]string
		switch ch.Channel {
		case ChannelCustomer:
			data = map[string]string{"content": params["text"]}
		case ChannelSubscribe:
			if data, err = renderSubscribe(ch.Fields, params); err != nil {
				d.returnCredit(ctx, n.PatientID, ch.TemplateID)
				return d.finish(ctx, n, model.NotifyDead, "模板参数不符合要求："+err.Error())
			}
		default:
			data = renderTemplate(ch.Fields, params)
		}
		if err := d.waitRate(ctx, api); err != nil {
			return err
		}
		payload, _ := json.Marshal(map[string]any{"touser": to, "template_id": ch.TemplateID, "page": n.Page, "data": data})
		if ch.Channel != ChannelOATemplate {
			// Mark the row before the request leaves: if this worker dies
			// mid-send, the outcome is unknown and the row is not resent
			// (neither API takes a client message id).
			if ok, err := d.markSending(ctx, n, ch, string(payload)); err != nil || !ok {
				return err // the lease was lost: someone else owns the row now
			}
		} else {
			// A template send carries client_msg_id: if this worker dies, the
			// claim expires and the resend is harmless, so no write is needed
			// before sending; what was sent is recorded with the outcome.
			n.Attempts++
			n.Channel, n.TemplateID, n.Payload = ch.Channel, ch.TemplateID, string(payload)
		}
		var msgID string
		switch ch.Channel {
		case ChannelSubscribe:
			msgID, err = d.send.Subscribe(ctx, to, ch.TemplateID, n.Page, data)
		case ChannelCustomer:
			err = d.send.Customer(ctx, to, data["content"])
		default:
			msgID, err = d.send.Template(ctx, to, ch.TemplateID, fmt.Sprintf("careloop-%d", n.ID), n.Page, data)
		}
		if err == nil {
			d.m.sent.WithLabelValues(n.Reason, ch.Channel).Inc()
			return d.markSent(ctx, n, msgID)
		}
		var se sendError
		if !errors.As(err, &se) {
			return d.retry(ctx, n, staffReason(err), true)
		}
		switch se.Outcome() {
		case wxconfig.OutcomeNoCredit: // the credit is gone: try the next channel
			d.zeroCredit(ctx, n.PatientID, ch.TemplateID)
			notes = append(notes, "订阅消息："+se.Chinese())
			continue
		case wxconfig.OutcomeWindowClosed: // fall back to a notice
			d.closeWindow(ctx, to)
			notes = append(notes, "客服消息："+se.Chinese())
			continue
		case wxconfig.OutcomeNotFollower:
			d.bestEffort("mark unfollowed", d.db.Conn(ctx).Model(&model.Follower{}).Where("open_id = ?", to).Update("subscribed", false))
			notes = append(notes, "模板消息："+se.Chinese())
			continue
		case wxconfig.OutcomeQuotaHeld:
			until := d.hold(ctx, api)
			if until.Before(heldUntil) || heldUntil.IsZero() {
				heldUntil = until
			}
			d.undoAttempt(ctx, n)
			notes = append(notes, api+"："+se.Chinese())
			continue
		case wxconfig.OutcomeMinuteLimit:
			d.undoAttempt(ctx, n)
			next := d.now().Truncate(time.Minute).Add(time.Minute)
			return d.reschedule(ctx, n, next, se.Chinese()+"，下一分钟再发")
		case wxconfig.OutcomeUnknown:
			if ch.Channel == ChannelOATemplate {
				return d.retry(ctx, n, "结果未知，以相同 client_msg_id 重发："+se.Chinese(), true)
			}
			return d.finish(ctx, n, model.NotifyDead, "发送后超时，结果未知；为免重复不再重发")
		case wxconfig.OutcomeRetry, wxconfig.OutcomeRefreshToken:
			d.giveBack(ctx, n, ch, to)
			return d.retry(ctx, n, se.Chinese(), true)
		default: // wxconfig.OutcomeBadRequest: a bug or bad config
			d.giveBack(ctx, n, ch, to)
			d.m.dead.WithLabelValues(n.Reason, ch.Channel).Inc()
			return d.finish(ctx, n, model.NotifyDead, se.Chinese())
		}
	}
	if !heldUntil.IsZero() {
		return d.reschedule(ctx, n, heldUntil, strings.Join(notes, "; "))
	}
	d.m.undeliverable.WithLabelValues(n.Reason).Inc()
	return d.finish(ctx, n, model.NotifyUndeliverable, strings.Join(notes, "; "))
}

func (d *Dispatcher) markSending(ctx context.Context, n *model.Notification, ch ChannelTemplate, payload string) (bool, error) {
	lease := d.now().UTC().Add(d.cfg.Lease)
	res := d.db.Conn(ctx).Model(&model.Notification{}).
		Where("id = ? AND claim_token = ? AND status IN ?", n.ID, n.ClaimToken, []string{model.NotifyClaimed, model.NotifySending}).
		Updates(map[string]any{"status": model.NotifySending, "channel": ch.Channel, "template_id": ch.TemplateID,
			"payload": model.SealText(payload), "attempts": gorm.Expr("attempts + 1"), "lease_until": lease})
	if res.Error != nil {
		return false, res.Error
	}
	n.Attempts++
	n.Channel, n.TemplateID, n.Payload = ch.Channel, ch.TemplateID, payload
	return res.RowsAffected == 1, nil
}

func (d *Dispatcher) undoAttempt(_ context.Context, n *model.Notification) { n.Attempts-- }
