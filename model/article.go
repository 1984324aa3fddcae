package model

import "time"

// Article states, as the console shows them: written (draft), handed to
// WeChat (submitted: images uploaded, draft added, publishing asked),
// publishing (WeChat accepted the task), and its end.
const (
	ArticleDraft      = "draft"
	ArticleSubmitted  = "submitted"
	ArticlePublishing = "publishing"
	ArticlePublished  = "published"
	ArticleFailed     = "failed"
)

// Article categories, with the names staff and patients read.
var ArticleCategories = map[string]string{
	"science":  "健康科普",
	"guide":    "体检须知",
	"news":     "医院动态",
	"activity": "活动",
}

// Article is a piece of self-media written in the console: published to the
// official account and listed in the mini-program. Content is sanitised
// HTML whose images are ours (/media/…); the WeChat copies of the images
// are in WxImage. Each publishing is an ArticlePublication; the article
// carries the state and the URL of the newest.
type Article struct {
	ID          uint64 `gorm:"primaryKey"`
	Title       string `gorm:"size:64"`
	Author      string `gorm:"size:32"`
	Digest      string `gorm:"size:512"`
	Content     string `gorm:"type:mediumtext"`
	CoverFileID uint64
	Category    string  `gorm:"size:16;index:idx_article_list,priority:2"`
	PackageID   *uint64 // the package it promotes, booked from the article
	Status      string  `gorm:"size:16;index:idx_article_list,priority:1"`
	// Version counts the edits; a publication records the version it sent.
	Version int
	// PublishedVersion is the version WeChat holds (0: never published).
	PublishedVersion int
	ArticleURL       string `gorm:"size:512"`
	FailReason       string `gorm:"size:512"`
	PublishedAt      *time.Time
	StaffID          uint64
	CreatedAt        time.Time
	UpdatedAt        time.Time
	// Counters kept beside the rows they count (reads and shares), so that
	// the lists answer without counting.
	ReadCount   int
	ReaderCount int
	ShareCount  int
}

// Publication states.
const (
	PublicationQueued     = "queued"     // waiting for a worker
	PublicationSubmitting = "submitting" // a worker is uploading and submitting
	PublicationPublishing = "publishing" // WeChat has the task (PublishID)
	PublicationPublished  = "published"
	PublicationFailed     = "failed"
)

// ArticlePublication is one publishing of one version of an article: the
// draft WeChat holds (MediaID), its publish task (PublishID), and its end
// (the permanent ArticleURL, or why it failed). Old publications keep
// their URLs: an edited article published again is a new publication.
type ArticlePublication struct {
	ID          uint64 `gorm:"primaryKey"`
	ArticleID   uint64 `gorm:"index"`
	Version     int
	Status      string `gorm:"size:16;index:idx_publication_status,priority:1"`
	MediaID     string `gorm:"size:128"`
	PublishID   string `gorm:"size:64;index"`
	MsgDataID   string `gorm:"size:64"`
	WxArticleID string `gorm:"size:128"`
	ArticleURL  string `gorm:"size:512"`
	FailIdx     string `gorm:"size:64"`
	FailReason  string `gorm:"size:512"`
	Attempts    int
	// ClaimToken and LeaseUntil keep a submitting publication to one worker.
	ClaimToken  string `gorm:"size:32"`
	LeaseUntil  *time.Time
	StaffID     uint64
	SubmittedAt *time.Time
	// PolledAt is when freepublish/get was last asked (the event may never
	// come).
	PolledAt   *time.Time `gorm:"index:idx_publication_status,priority:2"`
	FinishedAt *time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// MediaFile is an image staff uploaded for articles (served to anyone at
// /media/<Key>: articles are public).
type MediaFile struct {
	ID        uint64 `gorm:"primaryKey"`
	Key       string `gorm:"size:64;uniqueIndex"`
	Mime      string `gorm:"size:32"`
	Size      int
	Width     int
	Height    int
	StaffID   uint64
	CreatedAt time.Time
}

// WxImage kinds: an in-article image (media/uploadimg, URL) and a cover
// (permanent thumb material, MediaID).
const (
	WxImageInline = "inline"
	WxImageThumb  = "thumb"
)

// WxImage is WeChat's copy of one of our images, kept beside ours: WeChat's
// image URLs do not display outside WeChat, and uploading once is enough.
type WxImage struct {
	ID        uint64 `gorm:"primaryKey"`
	FileID    uint64 `gorm:"uniqueIndex:idx_wx_image,priority:1"`
	Kind      string `gorm:"size:8;uniqueIndex:idx_wx_image,priority:2"`
	URL       string `gorm:"size:512"`
	MediaID   string `gorm:"size:128"`
	CreatedAt time.Time
}

// ArticleRead is a patient's reading of an article: one row per patient
// (unique readers), counting how often they opened it.
type ArticleRead struct {
	ID        uint64 `gorm:"primaryKey"`
	ArticleID uint64 `gorm:"uniqueIndex:idx_article_reader,priority:1"`
	PatientID uint64 `gorm:"uniqueIndex:idx_article_reader,priority:2;index"`
	Count     int
	FirstAt   time.Time
	LastAt    time.Time
}

// ArticleShare is a patient's share of an article, with the mini-program's
// scene (a chat, moments, …).
type ArticleShare struct {
	ID        uint64 `gorm:"primaryKey"`
	ArticleID uint64 `gorm:"index"`
	PatientID uint64 `gorm:"index"`
	Scene     string `gorm:"size:32"`
	CreatedAt time.Time
}
