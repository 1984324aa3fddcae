package notify

import (
	"context"

	"careloop/model"
)

// recipient is what delivery needs to know about the patient.
type recipient struct {
	openID    string          // mini-program
	oaOpenID  string          // official account, when following
	cancel    string          // why no notice may go, if none may
	marketing bool            // the latest marketing consent grants it
	optOut    map[string]bool // categories opted out of
	credits   map[string]int  // subscribe credits per template when the batch was claimed
	window    bool            // the customer-service window was open when the batch was claimed
}

// job is a claimed row and its recipient.
type job struct {
	n  model.Notification
	rc recipient
}

// recipients loads, for a claimed batch, what delivery needs to know about
// each patient, in a handful of queries for the whole batch.
func (d *Dispatcher) recipients(ctx context.Context, rows []model.Notification) (map[uint64]recipient, error) {
	out := make(map[uint64]recipient, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	ids := make([]uint64, 0, len(rows))
	seen := map[uint64]bool{}
	cats := map[uint64]map[string]bool{}
	for _, n := range rows {
		if !seen[n.PatientID] {
			seen[n.PatientID] = true
			ids = append(ids, n.PatientID)
		}
		if cats[n.PatientID] == nil {
			cats[n.PatientID] = map[string]bool{}
		}
		cats[n.PatientID][n.Category] = true
	}
	db := d.db.Conn(ctx)
	var patients []model.Patient
	if err := db.Select("id", "open_id", "erased_at").Where("id IN ?", ids).Find(&patients).Error; err != nil {
		return nil, err
	}
	for _, id := range ids {
		out[id] = recipient{cancel: "患者记录已不存在"}
	}
	for _, p := range patients {
		rc := recipient{}
		if p.ErasedAt != nil {
			rc.cancel = "患者已注销"
		} else if p.OpenID != nil {
			rc.openID = *p.OpenID
		}
		out[p.ID] = rc
	}
	var followers []model.Follower
	if err := db.Select("open_id", "patient_id", "window_opened_at", "window_replies").Where("patient_id IN ? AND subscribed = ?", ids, true).
		Order("window_opened_at").Find(&followers).Error; err != nil {
		return nil, err
	}
	for _, f := range followers { // the most recent window last: it wins
		if rc := out[*f.PatientID]; rc.cancel == "" {
			rc.oaOpenID = f.OpenID
			rc.window = f.WindowOpenedAt != nil && d.now().Sub(*f.WindowOpenedAt) < windowTTL && f.WindowReplies < windowReplies
			out[*f.PatientID] = rc
		}
	}
	var credits []model.SubscribeCredit
	if err := db.Where("patient_id IN ? AND credits > 0", ids).Find(&credits).Error; err != nil {
		return nil, err
	}
	for _, c := range credits {
		rc := out[c.PatientID]
		if rc.credits == nil {
			rc.credits = map[string]int{}
		}
		rc.credits[c.TemplateID] = c.Credits
		out[c.PatientID] = rc
	}
	var optional []uint64 // patients with care or marketing notices in this batch
	for id, c := range cats {
		if c[model.CategoryCare] || c[model.CategoryMarketing] {
			optional = append(optional, id)
		}
	}
	if len(optional) == 0 {
		return out, nil
	}
	var prefs []model.NotifyPreference
	if err := db.Where("patient_id IN ? AND opt_out = ?", optional, true).Find(&prefs).Error; err != nil {
		return nil, err
	}
	for _, p := range prefs {
		rc := out[p.PatientID]
		if rc.optOut == nil {
			rc.optOut = map[string]bool{}
		}
		rc.optOut[p.Category] = true
		out[p.PatientID] = rc
	}
	var consents []model.Consent
	if err := db.Where("patient_id IN ? AND kind = ?", optional, model.ConsentMarketing).Order("id").Find(&consents).Error; err != nil {
		return nil, err
	}
	for _, c := range consents { // in id order: the last one wins
		rc := out[c.PatientID]
		rc.marketing = c.Granted
		out[c.PatientID] = rc
	}
	return out, nil
}

// cancelReason says why n must not go to rc, or "".
func (rc recipient) cancelReason(n *model.Notification) string {
	switch {
	case rc.cancel != "":
		return rc.cancel
	case n.Category == model.CategoryMarketing && !rc.marketing:
		return "患者未同意接收营销消息"
	case (n.Category == model.CategoryCare || n.Category == model.CategoryMarketing) && rc.optOut[n.Category]:
		return "患者已关闭" + categoryName[n.Category] + "通知"
	}
	return ""
}

// categoryName names a notice category in Chinese.
var categoryName = map[string]string{
	model.CategoryCare: "关怀提醒", model.CategoryMarketing: "营销", model.CategoryService: "服务", model.CategoryUrgent: "紧急",
}
