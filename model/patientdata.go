package model

import "time"

// MergeRule says what merging two records of one person (phone binding that
// finds the HIS-imported record) does with a table's rows.
type MergeRule int

const (
	// MergeMove re-points the rows to the surviving patient.
	MergeMove MergeRule = iota + 1
	// MergeCombine: both records may hold a row that must stay unique; the
	// rows are combined by the rule in MergeNote.
	MergeCombine
	// MergeWithParent: the rows hang off a parent row (a message off its
	// conversation) and move with it.
	MergeWithParent
	// MergeByOpenID: the rows are keyed by an official-account openid, not
	// by the patient, and follow the follower row.
	MergeByOpenID
)

// EraseRule says what a patient's erasure request does with a table's rows.
type EraseRule int

const (
	// EraseDelete: the rows go.
	EraseDelete EraseRule = iota + 1
	// EraseRetain: a medical record, kept for the legal retention period
	// (RetentionYears) but sealed: cut from the person's identity and
	// excluded from every list, search, analysis and message.
	EraseRetain
	// EraseAnonymise: the rows stay (ledgers, statistics) with every
	// personal content cleared.
	EraseAnonymise
	// EraseUnlink: the row belongs to someone else too (an official-account
	// follower); only its link to the patient goes.
	EraseUnlink
	// EraseKeep: kept unchanged; EraseNote says why the law wants it kept and
	// why it holds nothing personal beyond the (anonymised) patient id.
	EraseKeep
)

// RetentionYears is how long medical records outlive an erasure request:
// 门急诊病历 are kept at least 15 years (《医疗机构病历管理规定》).
const RetentionYears = 15

// PatientData declares one table that holds a patient's data and what
// merge, export and erase do with it.
type PatientData struct {
	Model any
	// Column holds the patient id ("" when the rows hang off a parent).
	Column string
	// Parent selects the rows of a child table by the patient id: a WHERE
	// fragment with one "?" for it.
	Parent string
	// Where narrows the rows further (sessions: only patients' sessions).
	Where string
	Merge MergeRule
	// MergeNote is the combining rule, for MergeCombine.
	MergeNote string
	// Export is the key of the rows in the data export (GET /api/mp/me/export);
	// "" only with NoExport saying why.
	Export   string
	NoExport string
	Erase    EraseRule
	// EraseNote says what erasure does and why.
	EraseNote string
}

// PatientRegistry is every table that holds a patient's data. A test walks
// every model and fails when one with a patient id is missing here or from
// NotPatientData.
func PatientRegistry() []PatientData {
	return []PatientData{
		{Model: &Patient{}, Column: "id", Merge: MergeCombine, Export: "profile", Erase: EraseAnonymise,
			MergeNote: "the imported record survives and takes the WeChat identity (openid, unionid), and the first touch when it has none; the self-registered record goes",
			EraseNote: "the row stays so that ledgers and retained medical records keep their reference; name, phone, ID card, HIS id, birth date, region and WeChat ids are cleared; the identity is kept sealed for the retention period (RetainedEnc), readable only to answer a legal request"},
		{Model: &Session{}, Column: "subject_id", Where: "subject = 'patient'", Merge: MergeMove, Erase: EraseDelete,
			NoExport: "login sessions are credentials, not data about the person", EraseNote: "every session ends"},
		{Model: &HealthArchive{}, Column: "patient_id", Merge: MergeCombine, Export: "health_archive", Erase: EraseDelete,
			MergeNote: "the archive updated last wins; the other goes"},
		{Model: &FamilyMember{}, Column: "owner_id", Merge: MergeMove, Export: "family_members", Erase: EraseDelete},
		{Model: &Consent{}, Column: "patient_id", Merge: MergeMove, Export: "consents", Erase: EraseKeep,
			MergeNote: "all decisions move; the newer decision of a kind wins (the latest row counts)",
			EraseNote: "proof of what the patient agreed to and when (PIPL art. 14); no personal content"},
		{Model: &PatientTag{}, Column: "patient_id", Merge: MergeCombine, Export: "tags", Erase: EraseDelete,
			MergeNote: "the union of both records' tags; a tag on both keeps the earlier assignment"},
		{Model: &AuditLog{}, Column: "patient_id", Merge: MergeMove, Export: "access_log", Erase: EraseKeep,
			EraseNote: "the record of which staff read the patient's data is the hospital's accountability (PIPL art. 54); it names staff and actions, not the patient's data"},
		{Model: &Notification{}, Column: "patient_id", Merge: MergeMove, Export: "notifications", Erase: EraseDelete,
			EraseNote: "message contents go; pending notices are never sent"},
		{Model: &SubscribeCredit{}, Column: "patient_id", Merge: MergeCombine, Export: "subscriptions", Erase: EraseDelete,
			MergeNote: "credits of one template add"},
		{Model: &Follower{}, Column: "patient_id", Merge: MergeMove, Export: "official_account", Erase: EraseUnlink,
			EraseNote: "the follower row is WeChat's subscription state of that openid; its link to the patient and the unionid go"},
		{Model: &NotifyPreference{}, Column: "patient_id", Merge: MergeCombine, Export: "notification_preferences", Erase: EraseDelete,
			MergeNote: "the choice made last wins per category"},
		{Model: &Booking{}, Column: "patient_id", Merge: MergeMove, Export: "bookings", Erase: EraseKeep,
			MergeNote: "bookings move and become the surviving person's; a booking on a day the other record already has one is cancelled (its seat and coupon return)",
			EraseNote: "visits and what was paid are the hospital's accounting record; bookings still to come are cancelled and their seats return; they hold no personal content"},
		{Model: &Report{}, Column: "patient_id", Merge: MergeMove, Export: "reports", Erase: EraseRetain,
			EraseNote: "checkup reports are medical records: kept RetentionYears, sealed (RetainedUntil set): no list, search, analysis or message reaches them"},
		{Model: &ReportVersion{}, Parent: "report_id IN (SELECT id FROM reports WHERE patient_id = ?)", Merge: MergeWithParent, Export: "reports", Erase: EraseRetain,
			EraseNote: "kept with their report"},
		{Model: &Task{}, Column: "patient_id", Merge: MergeMove, Erase: EraseRetain,
			NoExport:  "staff work items; what they are about is exported (reports, surveys, conversations)",
			EraseNote: "critical-value handling and interpretation requests are clinical records and are retained sealed; other tasks (follow-ups, escalations) go"},
		{Model: &PointsAccount{}, Column: "patient_id", Merge: MergeCombine, Export: "points", Erase: EraseKeep,
			MergeNote: "balances and growth add; the ledger entries move and a ledger entry \"merged from patient N\" records it",
			EraseNote: "the points ledger is an accounting record; the balance can no longer be spent"},
		{Model: &PointsEntry{}, Column: "patient_id", Merge: MergeMove, Export: "points", Erase: EraseKeep,
			EraseNote: "the points ledger is an accounting record; it holds amounts and reasons, not personal content"},
		{Model: &Coupon{}, Column: "patient_id", Merge: MergeMove, Export: "coupons", Erase: EraseKeep,
			EraseNote: "redeemed coupons are part of the points ledger; unused ones can no longer be used"},
		{Model: &SurveyInvite{}, Column: "patient_id", Merge: MergeMove, Export: "surveys", Erase: EraseDelete,
			MergeNote: "invitations move; of two for one occurrence the answered one stays"},
		{Model: &SurveyResponse{}, Column: "patient_id", Merge: MergeMove, Export: "surveys", Erase: EraseAnonymise,
			EraseNote: "the scores stay in the statistics (NPS, CSAT) without the answers' texts or the comment"},
		{Model: &Complaint{}, Column: "patient_id", Merge: MergeMove, Export: "complaints", Erase: EraseAnonymise,
			EraseNote: "the handling record stays for the statistics (category, department, times, rating); the complaint's, the resolution's and the reply's texts go"},
		{Model: &ComplaintStep{}, Parent: "complaint_id IN (SELECT id FROM complaints WHERE patient_id = ?)", Merge: MergeWithParent, Export: "complaints", Erase: EraseAnonymise,
			EraseNote: "the steps stay (who moved it when); their notes go"},
		{Model: &Conversation{}, Column: "patient_id", Merge: MergeMove, Export: "conversations", Erase: EraseDelete,
			MergeNote: "conversations move; of two open ones on a topic both stay, the older one closed"},
		{Model: &ChatMessage{}, Parent: "conversation_id IN (SELECT id FROM conversations WHERE patient_id = ?)", Merge: MergeWithParent, Export: "conversations", Erase: EraseDelete,
			EraseNote: "messages and the images they carry go"},
		{Model: &ChatUpload{}, Column: "patient_id", Merge: MergeMove, Erase: EraseDelete,
			NoExport: "images uploaded to be sent; a sent one is exported with its message, an unsent one expires within a day"},
		{Model: &OAEvent{}, Parent: "open_id IN (SELECT open_id FROM followers WHERE patient_id = ?)", Merge: MergeByOpenID, Erase: EraseDelete,
			NoExport: "the raw callbacks of the official account; what the patient wrote is exported with the conversations", EraseNote: "the raw official-account messages go"},
		{Model: &ChannelScan{}, Parent: "open_id IN (SELECT open_id FROM followers WHERE patient_id = ?)", Merge: MergeByOpenID, Erase: EraseDelete,
			NoExport: "which channel's QR code an official-account openid scanned, for the channel's figures", EraseNote: "the scans go"},
		{Model: &WxTagMember{}, Parent: "open_id IN (SELECT open_id FROM followers WHERE patient_id = ?)", Merge: MergeByOpenID, Erase: EraseKeep,
			NoExport:  "which mirrored WeChat tags WeChat holds for an official-account openid (the tags themselves are exported)",
			EraseNote: "WeChat's state of an openid: kept until the next tag sync, which untags it at WeChat (the patient's tags and follower link are gone) and then deletes the row"},
		{Model: &RFMScore{}, Column: "patient_id", Merge: MergeCombine, Export: "rfm", Erase: EraseDelete,
			MergeNote: "a run that scored both records keeps the surviving record's score; the next run scores the merged person"},
		{Model: &ArticleRead{}, Column: "patient_id", Merge: MergeCombine, Export: "article_reads", Erase: EraseDelete,
			MergeNote: "an article both records read keeps the surviving record's row"},
		{Model: &ArticleShare{}, Column: "patient_id", Merge: MergeMove, Export: "article_shares", Erase: EraseDelete},
		{Model: &CampaignRecipient{}, Column: "patient_id", Merge: MergeCombine, Export: "campaigns", Erase: EraseDelete,
			MergeNote: "a campaign that reached both records keeps the surviving record's row (nobody is reached twice); the rest move",
			EraseNote: "which campaigns reached the patient, and their conversions, go"},
		{Model: &PatientVisit{}, Column: "patient_id", Merge: MergeCombine, Erase: EraseDelete,
			NoExport:  "a summary of the bookings (last checkup, counts), which are exported themselves",
			MergeNote: "recomputed from the bookings that moved",
			EraseNote: "the summary goes (the bookings stay as the accounting record)"},
		// After HealthArchive and Report: its merge step reads where they went.
		{Model: &HealthMark{}, Column: "patient_id", Merge: MergeCombine, Erase: EraseDelete,
			NoExport:  "an index of keyed hashes of abnormal report items and archive entries, for care segments; the reports and the archive are exported",
			MergeNote: "report marks move with their reports; archive marks are rebuilt from the archive that survives",
			EraseNote: "the index goes with the archive (reports are retained sealed, and nothing analyses them)"},
	}
}

// NotPatientData lists the models that hold no patient's data, each with
// the reason, so that a new table has to be classified.
func NotPatientData() map[any]string {
	return map[any]string{
		&Staff{}:              "hospital employees",
		&Article{}:            "self-media articles staff write",
		&ArticlePublication{}: "the publishing of an article to the official account",
		&MediaFile{}:          "images staff upload for articles",
		&WxImage{}:            "WeChat's copies of article images",
		&MassSend{}:           "a campaign: its target and counts (a patients target lists patient ids, which merge and erase leave as they are: the record of whom a past campaign was meant for)",
		&MassBatch{}:          "a mass send's calls to WeChat, by official-account openid",
		&MassReceipt{}:        "how many mass messages an official-account openid had in a month (WeChat's limit), kept apart from the person",
		&WxDraft{}:            "WeChat's drafts of articles",
		&Channel{}:            "marketing's channels and their QR codes",
		&WxTag{}:              "careloop tags mirrored as WeChat user tags",
		&RFMRun{}:             "a scoring run: thresholds and counts; the scores are RFMScore",
		&Segment{}:            "a saved filter over patients; its members are found when it is used",
		&Campaign{}:           "a campaign: its segment, message, goal and progress; whom it reached is CampaignRecipient",
		&ComputedTag{}:        "how a computed tag is computed; its holders are PatientTag rows",
		&MassJobResult{}:      "WeChat's counts of a mass-send job",
		&ImportJob{}:          "an upload's progress and counts; the rows themselves become Patient rows, and the upload is deleted when the job ends",
		&Setting{}:            "runtime settings",
		&Tag{}:                "the tag catalogue; assignments are PatientTag",
		&Package{}:            "the package catalogue",
		&Slot{}:               "capacity of the schedule; seats are counted, not named",
		&ClosedDay{}:          "the center's calendar",
		&Level{}:              "membership level definitions",
		&Reward{}:             "the rewards catalogue",
		&Survey{}:             "survey definitions",
		&AutoReply{}:          "keyword replies of the official account",
		&DoctorDuty{}:         "doctors' duty and routing counters",
		&CannedReply{}:        "doctors' prepared answers",
		&FileChunk{}:          "file contents, owned through the row that names the file (a report version, a chat message)",
	}
}

// RetainUntil is the end of the retention period of a medical record
// sealed at now.
func RetainUntil(now time.Time) time.Time { return now.AddDate(RetentionYears, 0, 0) }
