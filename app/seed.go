package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"careloop/model"
	"careloop/notify"
	"careloop/service"
)

// seedBooking gives the sandbox demo packages and slots for the next 14
// days, so that a newcomer can book at once. It leaves a database that has
// packages alone.
func seedBooking(ctx context.Context, db *model.DB, catalog *service.Catalog) error {
	var n int64
	if err := db.Conn(ctx).Model(&model.Package{}).Count(&n).Error; err != nil || n > 0 {
		return err
	}
	demo := []service.PackageInput{
		{Name: "基础健康体检套餐", Description: "适合所有成年人的年度基础体检", Items: []string{"一般检查", "血常规", "尿常规", "肝功能", "肾功能", "血脂", "空腹血糖", "心电图", "胸部 DR"}, PriceFen: 39900, Gender: "any", MinAge: 18, Active: true, SortOrder: 1},
		{Name: "中青年全面体检套餐", Description: "含腹部彩超与甲状腺彩超", Items: []string{"一般检查", "血常规", "生化全项", "腹部彩超", "甲状腺彩超", "心电图", "胸部 CT"}, PriceFen: 128000, Gender: "any", Active: true, SortOrder: 2},
		{Name: "女性关爱体检套餐", Description: "含乳腺彩超、妇科检查与 HPV", Items: []string{"一般检查", "血常规", "乳腺彩超", "妇科检查", "HPV", "TCT"}, PriceFen: 99800, Gender: "female", MinAge: 20, Active: true, SortOrder: 3},
		{Name: "男性精英体检套餐", Description: "含前列腺彩超与肿瘤标志物", Items: []string{"一般检查", "血常规", "前列腺彩超", "肿瘤标志物", "心脏彩超"}, PriceFen: 168000, Gender: "male", MinAge: 25, Active: true, SortOrder: 4},
	}
	for _, p := range demo {
		if _, err := catalog.CreatePackage(ctx, service.System, p); err != nil {
			return err
		}
	}
	periods := []service.Period{
		{Start: "08:00", End: "08:30", Capacity: 20}, {Start: "08:30", End: "09:00", Capacity: 20},
		{Start: "09:00", End: "09:30", Capacity: 20}, {Start: "09:30", End: "10:00", Capacity: 15},
		{Start: "10:00", End: "10:30", Capacity: 10},
	}
	week := map[int][]service.Period{1: periods, 2: periods, 3: periods, 4: periods, 5: periods, 6: periods[:3]}
	today := time.Now().In(model.Shanghai)
	_, err := catalog.Generate(ctx, service.System, service.ScheduleInput{From: today.Format(time.DateOnly), To: today.AddDate(0, 0, 14).Format(time.DateOnly), Weekdays: week})
	return err
}

// seedSurvey gives the sandbox an after-checkup satisfaction survey.
func seedSurvey(ctx context.Context, db *model.DB, surveys *service.Surveys) error {
	var n int64
	if err := db.Conn(ctx).Model(&model.Survey{}).Count(&n).Error; err != nil || n > 0 {
		return err
	}
	_, err := surveys.Define(ctx, service.System, "checkup", "体检服务满意度调查", model.TriggerAfterCheckup, []service.Question{
		{ID: "overall", Kind: service.QRating, Title: "您对本次体检服务的总体满意度", Required: true},
		{ID: "nps", Kind: service.QNPS, Title: "您有多大可能向亲友推荐我们的体检中心？", Required: true},
		{ID: "best", Kind: service.QMultiple, Title: "您最满意的环节", Options: []string{"预约", "前台", "采血", "影像检查", "报告解读"}},
		{ID: "comment", Kind: service.QText, Title: "您的意见和建议"},
	})
	return err
}

// seedChat gives the demo a doctor on duty, shared canned replies and an
// after-chat survey, so that a conversation started in the demo is answered.
func (a *App) seedChat(ctx context.Context) error {
	if err := a.Auth.EnsureStaff(ctx, DemoDoctorUser, DemoAdminPassword, model.RoleDoctor, DemoDoctorName); err != nil {
		return err
	}
	var doc model.Staff
	if err := a.DB.Conn(ctx).Where("username = ?", DemoDoctorUser).Take(&doc).Error; err != nil {
		return err
	}
	var duties int64
	if err := a.DB.Conn(ctx).Model(&model.DoctorDuty{}).Where("staff_id = ?", doc.ID).Count(&duties).Error; err != nil || duties > 0 {
		return err // set up before: keep what the demo user changed
	}
	if err := a.Chat.SetDuty(ctx, service.System, doc.ID, "体检中心", true); err != nil {
		return err
	}
	admin := service.Principal{Kind: model.SubjectStaff, Role: model.RoleAdmin}
	for _, r := range [][2]string{
		{"问候", "您好，我是体检中心的医生，请问有什么可以帮您？"},
		{"空腹要求", "体检当天请空腹（至少 8 小时不进食），可少量饮水；高血压患者可按时服药。"},
	} {
		if _, err := a.Chat.SaveCannedReply(ctx, admin, r[0], r[1], true); err != nil {
			return err
		}
	}
	var n int64
	if err := a.DB.Conn(ctx).Model(&model.Survey{}).Where("survey_trigger = ?", model.TriggerAfterChat).Count(&n).Error; err != nil || n > 0 {
		return err
	}
	_, err := a.Surveys.Define(ctx, service.System, "chat", "在线咨询满意度", model.TriggerAfterChat, []service.Question{
		{ID: "overall", Kind: service.QRating, Title: "您对本次咨询的满意度", Required: true},
		{ID: "comment", Kind: service.QText, Title: "您的意见和建议"},
	})
	return err
}

// seedToday gives the front desk a day to work on first start: demo
// patients (imported as from the HIS) booked into today's slots.
func (a *App) seedToday(ctx context.Context, catalog *service.Catalog) error {
	// Instances starting together on one database: one seeds.
	unlock, err := a.Store.TryLock(ctx, "seed:today", time.Minute)
	if err != nil || unlock == nil {
		return nil // another instance is seeding (or the lock is unavailable: no demo is better than a failed start)
	}
	defer unlock()
	n, err := model.Count(a.DB.Conn(ctx).Model(&model.Booking{}))
	if err != nil || n > 0 {
		return err
	}
	people := [][]string{
		{"姓名", "手机号", "性别", "出生日期", "HIS号", "来源渠道"},
		{"张伟", "13800000101", "男", "1980-03-15", "H10001", "演示"},
		{"王芳", "13800000102", "女", "1986-07-22", "H10002", "演示"},
		{"李娜", "13800000103", "女", "1992-11-08", "H10003", "演示"},
		{"刘洋", "13800000104", "男", "1975-01-30", "H10004", "演示"},
		{"陈静", "13800000105", "女", "1968-05-12", "H10005", "演示"},
		{"杨磊", "13800000106", "男", "1990-09-03", "H10006", "演示"},
	}
	if _, err := service.NewImporter(a.DB, a.Sealer, nil).Import(ctx, people, nil); err != nil {
		return err
	}
	now := time.Now().In(model.Shanghai)
	today := now.Format(time.DateOnly)
	var slots []model.Slot
	find := func() error {
		return a.DB.Conn(ctx).Where("date = ? AND slot_group = ? AND closed = ?", today, "", false).Order("start").Find(&slots).Error
	}
	if err := find(); err != nil {
		return err
	}
	if len(slots) == 0 { // a Sunday: the demo opens the morning anyway
		in := service.ScheduleInput{From: today, To: today, Weekdays: map[int][]service.Period{int(now.Weekday()): {
			{Start: "08:00", End: "08:30", Capacity: 20}, {Start: "08:30", End: "09:00", Capacity: 20}}}}
		if _, err := catalog.Generate(ctx, service.System, in); err != nil {
			return err
		}
		if err := find(); err != nil || len(slots) == 0 {
			return err
		}
	}
	var pkg model.Package
	if err := a.DB.Conn(ctx).Where("gender = ? AND active = ?", "any", true).Order("sort_order").Take(&pkg).Error; err != nil {
		return err
	}
	// Booked two days ago, as they would have been.
	early := service.NewBookings(a.DB, a.Outbox, a.Store, a.Store, a.CareRules, a.Points, a.Events, service.BookingConfig{},
		func() time.Time { return now.AddDate(0, 0, -2) })
	for i, row := range people[1:] {
		var p model.Patient
		if err := a.DB.Conn(ctx).Where("his_id = ?", row[4]).Take(&p).Error; err != nil {
			return err
		}
		in := service.BookInput{PackageID: pkg.ID, SlotID: slots[i%len(slots)].ID, IdempotencyKey: "demo-" + row[4]}
		if _, _, err := early.Book(ctx, service.Principal{Kind: model.SubjectPatient, ID: p.ID}, in); err != nil {
			return err
		}
	}
	if err := a.seedReports(ctx, now); err != nil {
		return err
	}
	if err := a.seedMembers(ctx, now, pkg); err != nil {
		return err
	}
	return a.seedFeedback(ctx, now)
}

// seedMembers gives marketing members with a history: three who came four
// times in two years, the last over a year ago (黄金, due for the annual
// re-check), one who came last month (more valuable still), one who came
// once long ago. They use the mini-program (log in with dev:demo-member-N),
// agreed to marketing and accepted the marketing subscribe messages.
func (a *App) seedMembers(ctx context.Context, now time.Time, pkg model.Package) error {
	histories := [][]int{{400, 520, 640, 720}, {380, 500, 610, 700}, {420, 540, 650, 725}, {30, 200, 380, 560, 700}, {690}}
	names := []string{"周敏", "吴刚", "郑丽", "孙浩", "马兰"}
	for i, days := range histories {
		open := fmt.Sprintf("demo-member-%d", i+1)
		p := model.Patient{OpenID: &open, Name: names[i], Gender: []string{"female", "male", "female", "male", "female"}[i], Source: "演示"}
		if err := a.DB.Conn(ctx).Create(&p).Error; err != nil {
			return err
		}
		for j, d := range days {
			at := now.AddDate(0, 0, -d)
			b := model.Booking{Code: fmt.Sprintf("M%d%06d", i+1, j), PatientID: p.ID, PersonKey: fmt.Sprintf("p:%d", p.ID), PackageID: pkg.ID,
				Date: at.Format(time.DateOnly), Status: model.BookingCompleted, PriceFen: 100000, IdempotencyKey: fmt.Sprintf("demo-member-%d-%d", i, j),
				CheckedInAt: &at, CompletedAt: &at, CreatedAt: at}
			if err := a.DB.Conn(ctx).Create(&b).Error; err != nil {
				return err
			}
		}
		if err := a.DB.Conn(ctx).Create(&model.Consent{PatientID: p.ID, Kind: model.ConsentMarketing, Version: "2026-11", Granted: true, IP: "demo"}).Error; err != nil {
			return err
		}
		for _, tpl := range a.Outbox.SubscribeTemplates(notify.ReasonCampaign) {
			if err := a.DB.Conn(ctx).Create(&model.SubscribeCredit{PatientID: p.ID, TemplateID: tpl, Credits: 3, UpdatedAt: now}).Error; err != nil {
				return err
			}
			if a.Sandbox != nil {
				a.Sandbox.GrantSubscribe(a.Cfg.MPAppID, open, tpl, 3)
			}
		}
	}
	return nil
}

// seedFeedback gives 满意度与投诉 half a year of answered surveys and two
// complaints, one of them past its step's due time.
func (a *App) seedFeedback(ctx context.Context, now time.Time) error {
	var patients []model.Patient
	if err := a.DB.Conn(ctx).Where("his_id LIKE ?", "H1000%").Order("id").Find(&patients).Error; err != nil {
		return err
	}
	answers := []map[string]any{ // numbers as JSON decodes them
		{"overall": 5.0, "nps": 10.0, "comment": "前台很耐心，流程清楚"},
		{"overall": 4.0, "nps": 9.0},
		{"overall": 3.0, "nps": 6.0, "comment": "采血排队时间有点长"},
		{"overall": 5.0, "nps": 9.0, "comment": "报告解读很专业"},
		{"overall": 4.0, "nps": 8.0},
		{"overall": 2.0, "nps": 4.0, "comment": "停车不方便"},
	}
	for i := 0; i < 18 && len(patients) > 0; i++ {
		p := patients[i%len(patients)]
		occurrence := fmt.Sprintf("demo-%d", i)
		if err := a.Surveys.InviteAfter(ctx, model.TriggerAfterCheckup, p.ID, occurrence, "体检中心", 0); err != nil {
			return err
		}
		var inv model.SurveyInvite
		if err := a.DB.Conn(ctx).Where("patient_id = ? AND occurrence = ?", p.ID, occurrence).Take(&inv).Error; err != nil {
			return err
		}
		r, err := a.Surveys.Answer(ctx, service.Principal{Kind: model.SubjectPatient, ID: p.ID}, inv.ID, answers[i%len(answers)])
		if err != nil {
			return err
		}
		// Spread over the last six months, as a running center's would be.
		at := now.AddDate(0, -(i % 6), -(i % 20)).UTC()
		if err := a.DB.Conn(ctx).Model(&model.SurveyResponse{}).Where("id = ?", r.ID).Update("created_at", at).Error; err != nil {
			return err
		}
	}
	complaints := []struct{ category, content string }{
		{"service_attitude", "上周体检时采血窗口的工作人员态度很差，问了两次都不理人。"},
		{"environment", "体检中心二楼候诊区太拥挤，座位不够，老人只能站着等。"},
	}
	for i, c := range complaints {
		if i >= len(patients) {
			break
		}
		cp, err := a.Complaints.File(ctx, service.Principal{Kind: model.SubjectPatient, ID: patients[i].ID}, c.category, c.content)
		if err != nil {
			return err
		}
		if i == 0 { // filed three days ago and not yet picked up: overdue
			past := now.AddDate(0, 0, -3).UTC()
			if err := a.DB.Conn(ctx).Model(&model.Complaint{}).Where("id = ?", cp.ID).
				Updates(map[string]any{"created_at": past, "step_due_at": past.Add(24 * time.Hour)}).Error; err != nil {
				return err
			}
		}
	}
	// A question waiting in the doctors' inbox.
	if len(patients) > 1 {
		who := service.Principal{Kind: model.SubjectPatient, ID: patients[1].ID}
		cv, _, err := a.Chat.Start(ctx, who, service.StartRequest{Topic: "报告解读"})
		if err != nil {
			return err
		}
		if _, _, err := a.Chat.Send(ctx, who, cv.ID, service.PatientMessage{Kind: "text", Content: "医生您好，我的血脂偏高，需要吃药吗？", ClientKey: "demo-1"}); err != nil {
			return err
		}
	}
	return nil
}

// seedReports gives the 报告 page something to work on: a critical value
// for the doctors, a patient's request for an interpretation, and a report
// the PEIS sent for nobody careloop knows.
func (a *App) seedReports(ctx context.Context, now time.Time) error {
	day := func(d int) string { return now.AddDate(0, 0, d).Format(time.DateOnly) }
	reports := []service.ReportPayload{
		{ExternalID: "DEMO-R1", HISPatientID: "H10001", ExamDate: day(-7), Doctor: "赵主任",
			Sections: []service.ReportSection{{Name: "生化", Items: []service.ReportItem{
				{Code: "K", Name: "血钾", Value: "6.8", Unit: "mmol/L", ReferenceRange: "3.5-5.3", Abnormal: "high", Critical: true},
				{Code: "GLU", Name: "空腹血糖", Value: "7.2", Unit: "mmol/L", ReferenceRange: "3.9-6.1", Abnormal: "high"}}}},
			Conclusions: []string{"血钾显著升高（危急值）", "空腹血糖升高"}, Recommendations: []string{"立即复查血钾并就诊", "内分泌科随诊"}},
		{ExternalID: "DEMO-R2", HISPatientID: "H10002", ExamDate: day(-30), Doctor: "赵主任",
			Sections: []service.ReportSection{{Name: "血脂", Items: []service.ReportItem{
				{Code: "TC", Name: "总胆固醇", Value: "6.1", Unit: "mmol/L", ReferenceRange: "<5.2", Abnormal: "high"},
				{Code: "LDL", Name: "低密度脂蛋白", Value: "3.9", Unit: "mmol/L", ReferenceRange: "<3.4", Abnormal: "high"}}}},
			Conclusions: []string{"血脂偏高"}, Recommendations: []string{"低脂饮食，三个月后复查血脂"}},
		{ExternalID: "DEMO-R3", HISPatientID: "H19999", ExamDate: day(-3), Doctor: "赵主任",
			Sections: []service.ReportSection{{Name: "血常规", Items: []service.ReportItem{
				{Code: "WBC", Name: "白细胞", Value: "6.2", Unit: "10^9/L", ReferenceRange: "3.5-9.5"}}}},
			Conclusions: []string{"未见明显异常"}},
	}
	for i := range reports {
		res, err := a.Reports.Ingest(ctx, "demo", &reports[i], nil)
		if err != nil {
			return fmt.Errorf("demo report %s: %w", reports[i].ExternalID, err)
		}
		if reports[i].ExternalID == "DEMO-R2" && res.Matched && res.Report.PatientID != nil {
			who := service.Principal{Kind: model.SubjectPatient, ID: *res.Report.PatientID}
			if err := a.Reports.RequestInterpretation(ctx, who, res.Report.ID, "血脂偏高需要吃药吗？"); err != nil {
				return err
			}
		}
	}
	return nil
}

// seedMenu gives the sandbox's official account a menu to start from:
// booking and reports open the mini-program, a click asks for the phone.
func (a *App) seedMenu(ctx context.Context) error {
	if _, err := a.OA.LoadMenu(ctx, service.System); !errors.Is(err, model.ErrNotFound) {
		return err // there is one already (or the read failed)
	}
	button := func(s string) json.RawMessage { return json.RawMessage(s) }
	return a.OA.SaveMenu(ctx, service.System, service.Menu{Button: []json.RawMessage{
		button(`{"type":"miniprogram","name":"预约体检","url":"https://careloop.example/booking","appid":"` + a.Cfg.MPAppID + `","pagepath":"pages/booking/index"}`),
		button(`{"type":"miniprogram","name":"我的报告","url":"https://careloop.example/reports","appid":"` + a.Cfg.MPAppID + `","pagepath":"pages/reports/index"}`),
		button(`{"type":"click","name":"联系我们","key":"CONTACT"}`),
	}})
}
