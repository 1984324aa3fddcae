package service

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"careloop/model"
	"careloop/wxconfig"
)

// WeChatIdentity is what identity needs from WeChat.
type WeChatIdentity interface {
	// Code2Session exchanges a wx.login code for the openid and unionid.
	Code2Session(ctx context.Context, code string) (openID, unionID string, err error)
}

// KV is the shared cache and rate limiter identity needs (coord.Store
// satisfies it).
type KV interface {
	Get(ctx context.Context, key string) (string, bool, error)
	Set(ctx context.Context, key, val string, ttl time.Duration) error
	Allow(ctx context.Context, key string, limit int, window time.Duration) (bool, time.Duration, error)
	Hit(ctx context.Context, key string, window time.Duration) (int, error)
	Reset(ctx context.Context, key string) error
	Del(ctx context.Context, key string) error
	TryLock(ctx context.Context, key string, ttl time.Duration) (func(), error)
}

// Errors of identity.
var (
	ErrInvalidCode  = model.NewError(model.KindUnauthorized, "invalid_code", "登录凭证无效或已过期，请重新进入小程序")
	ErrCodeUsed     = model.NewError(model.KindUnauthorized, "code_used", "登录凭证已被使用，请重新进入小程序")
	ErrBadToken     = model.NewError(model.KindUnauthorized, "invalid_token", "登录状态无效，请重新登录")
	ErrTokenExpired = model.NewError(model.KindUnauthorized, "token_expired", "登录已过期，请重新登录")
	ErrBadLogin     = model.NewError(model.KindUnauthorized, "invalid_credentials", "用户名或密码错误")
	ErrBlocked      = model.NewError(model.KindForbidden, "account_blocked", "账号已被停用，请联系医院客服")
	ErrWeChatDown   = model.NewError(model.KindUnavailable, "wechat_unavailable", "微信服务繁忙，请稍后再试")
)

// AuthConfig tunes identity.
type AuthConfig struct {
	Secret        []byte        // token-signing key
	PatientTTL    time.Duration // default 30 days
	StaffTTL      time.Duration // default 12 hours
	IPAttemptsMin int           // staff login attempts per IP per minute; default 30
	// FreeFailures are the failures of one account from one address before
	// that address waits (default 3); DelayMax caps the wait (default 15
	// minutes); AttackFailures failures of one account from anywhere in
	// AttackWindow (defaults 10, 15 minutes) are reported through the log
	// and OnAttack.
	FreeFailures   int
	DelayMax       time.Duration
	AttackFailures int
	AttackWindow   time.Duration
	OnAttack       func(account string)
	Log            *slog.Logger
	// MPLoginsPerIP caps mini-program logins from one address a minute
	// (default 300: a hospital's Wi-Fi puts many patients behind one);
	// MPLoginsPerOpenID caps one WeChat user's logins in ten minutes
	// (default 30); MaxPatientSessions is how many live sessions a patient
	// keeps (default 10: the oldest end).
	MPLoginsPerIP      int
	MPLoginsPerOpenID  int
	MaxPatientSessions int
	// SessionCacheTTL is how long a checked session is believed live
	// without reading it again (default 30 s; negative: always read). Any
	// change to sessions or staff accounts drops the cache at once.
	SessionCacheTTL time.Duration
}

// Auth logs patients and staff in and checks their bearer tokens.
type Auth struct {
	db       *model.DB
	wx       WeChatIdentity
	kv       KV
	bus      Bus
	cfg      AuthConfig
	now      func() time.Time
	sessions *sessionCache
}

// NewAuth returns the identity use cases. bus carries "sessions changed"
// between instances (Watch listens).
func NewAuth(db *model.DB, wx WeChatIdentity, kv KV, bus Bus, cfg AuthConfig, now func() time.Time) *Auth {
	if cfg.PatientTTL == 0 {
		cfg.PatientTTL = 30 * 24 * time.Hour
	}
	if cfg.StaffTTL == 0 {
		cfg.StaffTTL = 12 * time.Hour
	}
	if cfg.FreeFailures == 0 {
		cfg.FreeFailures = 3
	}
	if cfg.DelayMax == 0 {
		cfg.DelayMax = 15 * time.Minute
	}
	if cfg.AttackFailures == 0 {
		cfg.AttackFailures = 10
	}
	if cfg.AttackWindow == 0 {
		cfg.AttackWindow = 15 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.IPAttemptsMin == 0 {
		cfg.IPAttemptsMin = 30
	}
	if cfg.MPLoginsPerIP == 0 {
		cfg.MPLoginsPerIP = 300
	}
	if cfg.MPLoginsPerOpenID == 0 {
		cfg.MPLoginsPerOpenID = 30
	}
	if cfg.MaxPatientSessions == 0 {
		cfg.MaxPatientSessions = 10
	}
	if cfg.SessionCacheTTL == 0 {
		cfg.SessionCacheTTL = 30 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	a := &Auth{db: db, wx: wx, kv: kv, bus: bus, cfg: cfg, now: now, sessions: newSessionCache(cfg.SessionCacheTTL)}
	if err := db.OnChange([]string{db.TableOf(&model.Session{}), db.TableOf(&model.Staff{})}, a.sessionsChanged); err != nil {
		cfg.Log.Error("session cache off: cannot watch session changes", "err", err)
		a.sessions = newSessionCache(0)
	}
	return a
}

// PatientLogin exchanges a wx.login code for a session, creating the patient
// on first login. Concurrent logins of one openid yield one patient.
func (a *Auth) PatientLogin(ctx context.Context, code, ip string) (string, *model.Patient, error) {
	code = strings.TrimSpace(code)
	if code == "" || len(code) > 128 {
		return "", nil, ErrInvalidCode
	}
	// Limits before WeChat is asked (its code2session has a quota too).
	if ok, _, err := a.kv.Allow(ctx, "mp-login-ip:"+ip, a.cfg.MPLoginsPerIP, time.Minute); err == nil && !ok {
		return "", nil, ErrLoginTooOften
	}
	openID, unionID, err := a.wx.Code2Session(ctx, code)
	if err != nil {
		if wxconfig.OutcomeOf(err) == wxconfig.OutcomeBadCode {
			if wxconfig.CodeOf(err) == wxconfig.CodeCodeUsed {
				return "", nil, ErrCodeUsed
			}
			return "", nil, ErrInvalidCode
		}
		return "", nil, fmt.Errorf("%w: %v", ErrWeChatDown, err)
	}
	if openID == "" {
		return "", nil, ErrInvalidCode
	}
	if ok, _, err := a.kv.Allow(ctx, "mp-login-openid:"+openID, a.cfg.MPLoginsPerOpenID, 10*time.Minute); err == nil && !ok {
		return "", nil, ErrLoginTooOften
	}
	p, err := a.findOrCreatePatient(ctx, openID, unionID)
	if err != nil {
		return "", nil, err
	}
	if p.BlockedAt != nil {
		return "", nil, ErrBlocked
	}
	epoch := a.sessions.current()
	tok, sid, err := a.newSession(ctx, model.SubjectPatient, p.ID, a.cfg.PatientTTL)
	if err != nil {
		return "", nil, err
	}
	if err := a.capSessions(ctx, p.ID); err != nil {
		return "", nil, err
	}
	// The session is live (it was just made): the patient's next request
	// need not read it, unless something changed sessions meanwhile.
	a.sessions.put(Principal{Kind: model.SubjectPatient, ID: p.ID, SessionID: sid}, a.now(), epoch)
	return tok, p, nil
}

func (a *Auth) findOrCreatePatient(ctx context.Context, openID, unionID string) (*model.Patient, error) {
	db := a.db.Conn(ctx)
	var p model.Patient
	err := db.Where("open_id = ?", openID).Take(&p).Error
	if err == nil {
		if p.UnionID == nil && unionID != "" {
			if err := db.Model(&p).Update("union_id", unionID).Error; err != nil {
				return nil, fmt.Errorf("link unionid of patient %d: %w", p.ID, err)
			}
			p.UnionID = &unionID
		}
		return &p, nil
	}
	if !errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, fmt.Errorf("find patient: %w", err)
	}
	// The same person may already be known through the official account
	// (same unionid, no mini-program openid yet): link instead of creating.
	if unionID != "" {
		res := db.Model(&model.Patient{}).Where("union_id = ? AND open_id IS NULL", unionID).
			Limit(1).Update("open_id", openID)
		if res.Error != nil && !model.IsDuplicate(res.Error) {
			return nil, fmt.Errorf("link patient by unionid: %w", res.Error)
		}
	}
	np := model.Patient{OpenID: &openID, Gender: "unknown"}
	if unionID != "" {
		np.UnionID = &unionID
	}
	if err := db.Clauses(clause.OnConflict{DoNothing: true}).Create(&np).Error; err != nil && !model.IsDuplicate(err) {
		return nil, fmt.Errorf("create patient: %w", err)
	}
	if err := db.Where("open_id = ?", openID).Take(&p).Error; err != nil {
		return nil, fmt.Errorf("load patient: %w", err)
	}
	return &p, nil
}

// StaffLogin checks a staff member's password. Against guessing it follows
// OWASP's advice rather than a hard lock a stranger could trigger: failures
// of one account from one address make that address wait, longer each time
// (FreeFailures free, then 1 s, 2 s, 4 s … up to DelayMax); an address is
// capped across accounts (IPAttemptsMin a minute); an account failing from
// anywhere AttackFailures times in AttackWindow is reported (log and
// OnAttack) — while its owner, from their own address, still logs in.
func (a *Auth) StaffLogin(ctx context.Context, username, password, ip string) (string, *model.Staff, error) {
	username = strings.TrimSpace(username)
	if ok, _, err := a.kv.Allow(ctx, "staff-login-ip:"+ip, a.cfg.IPAttemptsMin, time.Minute); err == nil && !ok {
		return "", nil, model.ErrTooMany
	}
	account := strings.ToLower(username)
	pair := account + "|" + ip
	if wait := a.loginWait(ctx, pair); wait > 0 {
		secs := int((wait + time.Second - 1) / time.Second)
		return "", nil, ErrLoginDelayed.WithMessage("登录失败次数过多，请 %d 秒后再试", secs).WithDetails(map[string]any{"retry_after_seconds": secs})
	}
	var st model.Staff
	err := a.db.Conn(ctx).Where("username = ?", username).Take(&st).Error
	if err != nil && !errors.Is(err, gorm.ErrRecordNotFound) {
		return "", nil, fmt.Errorf("find staff: %w", err)
	}
	hash := st.PasswordHash
	if hash == "" {
		hash = dummyHash() // spend the same time on unknown users
	}
	if !CheckPassword(hash, password) || st.ID == 0 {
		a.loginFailed(ctx, account, pair)
		return "", nil, ErrBadLogin
	}
	a.bestEffort("reset login failures", a.kv.Reset(ctx, "staff-login-fails:"+pair), a.kv.Del(ctx, "staff-login-until:"+pair))
	if st.DisabledAt != nil {
		return "", nil, ErrBlocked
	}
	tok, _, err := a.newSession(ctx, model.SubjectStaff, st.ID, a.cfg.StaffTTL)
	if err != nil {
		return "", nil, err
	}
	return tok, &st, nil
}

// ErrLoginDelayed: this address must wait before trying this account again.
var ErrLoginDelayed = model.NewError(model.KindTooMany, "login_delayed", "登录失败次数过多，请稍后再试")

// loginWait is how long pair (account|address) must still wait.
func (a *Auth) loginWait(ctx context.Context, pair string) time.Duration {
	v, ok, err := a.kv.Get(ctx, "staff-login-until:"+pair)
	if err != nil || !ok {
		return 0
	}
	until, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0
	}
	return time.Until(time.UnixMilli(until))
}

// loginFailed counts a failure of account from pair's address, sets that
// address's next wait, and reports an account failing from everywhere.
func (a *Auth) loginFailed(ctx context.Context, account, pair string) {
	n := a.hit(ctx, "staff-login-fails:"+pair, a.cfg.AttackWindow)
	if n > a.cfg.FreeFailures {
		wait := min(time.Second<<min(n-a.cfg.FreeFailures-1, 20), a.cfg.DelayMax)
		until := time.Now().Add(wait).UnixMilli()
		a.bestEffort("set login delay", a.kv.Set(ctx, "staff-login-until:"+pair, strconv.FormatInt(until, 10), wait))
	}
	if total := a.hit(ctx, "staff-login-account:"+account, a.cfg.AttackWindow); total >= a.cfg.AttackFailures {
		// Once per window: the first report takes the lock.
		if _, err := a.kv.TryLock(ctx, "staff-login-attack:"+account, a.cfg.AttackWindow); err == nil {
			a.cfg.Log.Warn("staff account under attack: repeated login failures", "account", account, "failures", total, "window", a.cfg.AttackWindow.String())
			if a.cfg.OnAttack != nil {
				a.cfg.OnAttack(account)
			}
		}
	}
}

// hit counts one failure at key in a window and returns the count (0 when
// the store fails: the limits are best effort, the password check is not).
func (a *Auth) hit(ctx context.Context, key string, window time.Duration) int {
	n, err := a.kv.Hit(ctx, key, window)
	a.bestEffort("count login failures", err)
	return n
}

func (a *Auth) bestEffort(what string, errs ...error) {
	if err := errors.Join(errs...); err != nil {
		a.cfg.Log.Warn("auth: "+what, "err", err)
	}
}

// dummyHash is checked against for unknown users, so that their answer
// takes as long as a wrong password; it is made on first need.
var dummyHash = sync.OnceValue(func() string {
	h, _ := HashPassword("careloop-dummy-password")
	return h
})

// EnsureStaff makes sure the staff account exists with this password and role.
func (a *Auth) EnsureStaff(ctx context.Context, username, password, role, name string) error {
	if !model.ValidRole(role) {
		return fmt.Errorf("ensure staff: bad role %q", role)
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	if name == "" {
		name = username
	}
	st := model.Staff{Username: username, PasswordHash: hash, Role: role, Name: name}
	if err := a.db.Conn(ctx).Clauses(clause.OnConflict{
		Columns:   []clause.Column{{Name: "username"}},
		DoUpdates: clause.AssignmentColumns([]string{"password_hash", "role", "updated_at"}),
	}).Create(&st).Error; err != nil {
		return fmt.Errorf("ensure staff %s: %w", username, err)
	}
	// A name nobody gave (empty, or the username an older version set) becomes the display name.
	return a.db.Conn(ctx).Model(&model.Staff{}).Where("username = ? AND (name = '' OR name = username)", username).
		Update("name", name).Error
}

// Token layout: base64url(session id 16 bytes | expiry unix 8 bytes) "." base64url(HMAC-SHA256).
func (a *Auth) sign(payload []byte) string {
	m := hmac.New(sha256.New, a.cfg.Secret)
	m.Write(payload)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(m.Sum(nil))
}

// newSession stores a session and returns its token and id.
func (a *Auth) newSession(ctx context.Context, subject string, id uint64, ttl time.Duration) (string, string, error) {
	sid := make([]byte, 16)
	if _, err := rand.Read(sid); err != nil {
		return "", "", err
	}
	exp := a.now().Add(ttl).UTC().Truncate(time.Second)
	s := model.Session{ID: hex.EncodeToString(sid), Subject: subject, SubjectID: id, ExpiresAt: exp}
	if err := a.db.Conn(ctx).Create(&s).Error; err != nil {
		return "", "", fmt.Errorf("create session: %w", err)
	}
	payload := make([]byte, 24)
	copy(payload, sid)
	binary.BigEndian.PutUint64(payload[16:], uint64(exp.Unix()))
	return a.sign(payload), s.ID, nil
}

// Authenticate checks a bearer token: signature, expiry, and that its session
// has not been revoked.
func (a *Auth) Authenticate(ctx context.Context, token string) (Principal, error) {
	dot := strings.IndexByte(token, '.')
	if dot <= 0 || len(token) > 200 {
		return Principal{}, ErrBadToken
	}
	enc := base64.RawURLEncoding.Strict() // one spelling per token: no slack in the padding bits
	payload, err1 := enc.DecodeString(token[:dot])
	sig, err2 := enc.DecodeString(token[dot+1:])
	if err1 != nil || err2 != nil || len(payload) != 24 {
		return Principal{}, ErrBadToken
	}
	m := hmac.New(sha256.New, a.cfg.Secret)
	m.Write(payload)
	if !hmac.Equal(sig, m.Sum(nil)) {
		return Principal{}, ErrBadToken
	}
	now := a.now()
	if exp := time.Unix(int64(binary.BigEndian.Uint64(payload[16:])), 0); !now.Before(exp) {
		return Principal{}, ErrTokenExpired
	}
	sid := hex.EncodeToString(payload[:16])
	if p, ok := a.sessions.get(sid, now); ok {
		return p, nil
	}
	epoch := a.sessions.current()
	var s model.Session
	if err := a.db.Conn(ctx).Where("id = ?", sid).Take(&s).Error; err != nil {
		if errors.Is(err, gorm.ErrRecordNotFound) {
			return Principal{}, ErrBadToken
		}
		return Principal{}, fmt.Errorf("load session: %w", err)
	}
	if !s.Active(now) {
		return Principal{}, ErrTokenExpired
	}
	p := Principal{Kind: s.Subject, ID: s.SubjectID, SessionID: s.ID}
	if s.Subject == model.SubjectStaff {
		var st model.Staff
		if err := a.db.Conn(ctx).Select("id", "role", "disabled_at").Where("id = ?", s.SubjectID).Take(&st).Error; err != nil {
			return Principal{}, ErrBadToken
		}
		if st.DisabledAt != nil {
			return Principal{}, ErrBlocked
		}
		p.Role = st.Role
	}
	a.sessions.put(p, now, epoch)
	return p, nil
}

// ActiveStaffSessions reports which of the session ids are live staff
// sessions of enabled accounts (live streams re-check theirs with it).
func (a *Auth) ActiveStaffSessions(ctx context.Context, ids []string) (map[string]bool, error) {
	out := make(map[string]bool, len(ids))
	now := a.now()
	for start := 0; start < len(ids); start += 500 {
		var live []string
		err := a.db.Conn(ctx).Table("sessions s").Joins("JOIN staffs st ON st.id = s.subject_id").
			Where("s.id IN ? AND s.subject = ? AND s.revoked_at IS NULL AND s.expires_at > ? AND st.disabled_at IS NULL",
				ids[start:min(start+500, len(ids))], model.SubjectStaff, now).Pluck("s.id", &live).Error
		if err != nil {
			return nil, err
		}
		for _, id := range live {
			out[id] = true
		}
	}
	return out, nil
}

// Logout revokes the caller's session.
func (a *Auth) Logout(ctx context.Context, p Principal) error {
	now := a.now()
	return a.db.Conn(ctx).Model(&model.Session{}).Where("id = ? AND revoked_at IS NULL", p.SessionID).
		Update("revoked_at", now).Error
}

// revokeSessions ends every live session of a subject (inside the caller's
// transaction, if any).
func revokeSessions(ctx context.Context, db *model.DB, subject string, id uint64, now time.Time) error {
	return revokeSessionsExcept(ctx, db, subject, id, "", now)
}

// revokeSessionsExcept ends the subject's sessions but keep (when set).
func revokeSessionsExcept(ctx context.Context, db *model.DB, subject string, id uint64, keep string, now time.Time) error {
	q := db.Conn(ctx).Model(&model.Session{}).Where("subject = ? AND subject_id = ? AND revoked_at IS NULL", subject, id)
	if keep != "" {
		q = q.Where("id <> ?", keep)
	}
	if err := q.Update("revoked_at", now).Error; err != nil {
		return fmt.Errorf("revoke sessions of %s %d: %w", subject, id, err)
	}
	return nil
}

// ErrLoginTooOften: too many logins from one address or of one user.
var ErrLoginTooOften = model.NewError(model.KindTooMany, "rate_limited", "登录过于频繁，请稍后再试")

// capSessions ends a patient's oldest live sessions beyond
// MaxPatientSessions.
func (a *Auth) capSessions(ctx context.Context, patientID uint64) error {
	var old []string
	if err := a.db.Conn(ctx).Model(&model.Session{}).
		Where("subject = ? AND subject_id = ? AND revoked_at IS NULL AND expires_at > ?", model.SubjectPatient, patientID, a.now().UTC()).
		Order("created_at DESC, id").Offset(a.cfg.MaxPatientSessions).Limit(1000).Pluck("id", &old).Error; err != nil {
		return fmt.Errorf("sessions of patient %d: %w", patientID, err)
	}
	if len(old) == 0 {
		return nil
	}
	if err := a.db.Conn(ctx).Model(&model.Session{}).Where("id IN ?", old).Update("revoked_at", a.now().UTC()).Error; err != nil {
		return fmt.Errorf("end old sessions of patient %d: %w", patientID, err)
	}
	return nil
}
