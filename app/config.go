// Package app wires careloop together: configuration, the database, the
// coordination store, WeChat, the services and the HTTP router. main calls
// it; API tests build the fully wired router through it.
package app

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"careloop/notify"
	"careloop/service"
)

// Modes careloop runs in.
const (
	ModeSandbox    = "sandbox"
	ModeProduction = "production"
)

// Sandbox defaults: they work against the WeChat sandbox and are refused in
// production mode.
const (
	sandboxMPAppID    = "wxsandboxmp000001"
	sandboxMPSecret   = "sandbox-mp-secret"
	sandboxOAAppID    = "wxsandboxoa000001"
	sandboxOASecret   = "sandbox-oa-secret"
	sandboxOAToken    = "sandboxtoken"
	sandboxOAAESKey   = "c2FuZGJveC1hZXMta2V5LWZvci1jYXJlbG9vcC0wMDA"
	sandboxToken      = "careloop-sandbox-token-secret-do-not-use"
	sandboxDataKeyB64 = "Y2FyZWxvb3Atc2FuZGJveC1kYXRhLWtleS0zMmJ5dGU="
	// SandboxIntegrationSecrets lets the sandbox accept reports signed by a
	// demo PEIS called "peis".
	SandboxIntegrationSecrets = "peis=sandbox-peis-secret"
)

// Config is careloop's whole configuration. Each field is read from the
// environment variable in its env tag, and may also come from a YAML file
// (-config) under its yaml name; the environment wins.
type Config struct {
	Addr          string `env:"CARELOOP_ADDR" yaml:"addr"`
	DataDir       string `env:"CARELOOP_DATA_DIR" yaml:"data_dir"`
	MySQLDSN      string `env:"CARELOOP_MYSQL_DSN" yaml:"mysql_dsn" secret:"true"`
	MySQLMaxConns int64  `env:"CARELOOP_MYSQL_MAX_CONNS" yaml:"mysql_max_conns"`
	RedisAddr     string `env:"CARELOOP_REDIS_ADDR" yaml:"redis_addr"`
	RedisPrefix   string `env:"CARELOOP_REDIS_PREFIX" yaml:"redis_prefix"`
	Mode          string `env:"CARELOOP_MODE" yaml:"mode"`
	AdminUser     string `env:"CARELOOP_ADMIN_USER" yaml:"admin_user"`
	AdminPassword string `env:"CARELOOP_ADMIN_PASSWORD" yaml:"admin_password" secret:"true"`
	TokenSecret   string `env:"CARELOOP_TOKEN_SECRET" yaml:"token_secret" secret:"true"`
	DataKey       string `env:"CARELOOP_DATA_KEY" yaml:"data_key" secret:"true"`
	// DataKeys is the keyring for rotation: "id:base64,…", the first the
	// current key (CARELOOP_DATA_KEY, when set, is key 1); HashKeyID picks
	// the key lookup hashes derive from (default: 1 while in the ring).
	DataKeys  string `env:"CARELOOP_DATA_KEYS" yaml:"data_keys" secret:"true"`
	HashKeyID int64  `env:"CARELOOP_HASH_KEY_ID" yaml:"hash_key_id"`
	MPAppID   string `env:"CARELOOP_MP_APPID" yaml:"mp_appid"`
	MPSecret  string `env:"CARELOOP_MP_SECRET" yaml:"mp_secret" secret:"true"`
	OAAppID   string `env:"CARELOOP_OA_APPID" yaml:"oa_appid"`
	OASecret  string `env:"CARELOOP_OA_SECRET" yaml:"oa_secret" secret:"true"`
	OAToken   string `env:"CARELOOP_OA_TOKEN" yaml:"oa_token" secret:"true"`
	OAAESKey  string `env:"CARELOOP_OA_AES_KEY" yaml:"oa_aes_key" secret:"true"`
	// OAMode is the official account message mode: "safe" (AES, the default;
	// plaintext posts are refused) or "plain".
	OAMode        string `env:"CARELOOP_OA_MODE" yaml:"oa_mode"`
	WeChatAPIBase string `env:"CARELOOP_WECHAT_API_BASE" yaml:"wechat_api_base"`
	// IntegrationSecrets are "source=secret" pairs for signed integrations (PEIS).
	IntegrationSecrets string        `env:"CARELOOP_INTEGRATION_SECRETS" yaml:"integration_secrets" secret:"true"`
	WeChatTimeout      time.Duration `env:"CARELOOP_WECHAT_TIMEOUT" yaml:"wechat_timeout"`
	MaxBodyBytes       int64         `env:"CARELOOP_MAX_BODY_BYTES" yaml:"max_body_bytes"`
	// TrustedProxies are the addresses or CIDR ranges of the proxies whose
	// X-Forwarded-For / X-Real-IP are believed (comma separated); empty:
	// none, the client is the connection's peer.
	TrustedProxies string `env:"CARELOOP_TRUSTED_PROXIES" yaml:"trusted_proxies"`
	// MetricsToken, when set, is the bearer token /metrics asks for
	// (required in production: the metrics are not public).
	MetricsToken string `env:"CARELOOP_METRICS_TOKEN" yaml:"metrics_token" secret:"true"`
	// MPLoginsPerIP caps mini-program logins from one address per minute.
	MPLoginsPerIP int64         `env:"CARELOOP_MP_LOGINS_PER_IP" yaml:"mp_logins_per_ip"`
	ShutdownGrace time.Duration `env:"CARELOOP_SHUTDOWN_GRACE" yaml:"shutdown_grace"`
	LogLevel      string        `env:"CARELOOP_LOG_LEVEL" yaml:"log_level"`
	// LiveHeartbeat is how often an idle live chat stream sends a keep-alive
	// and re-checks the staff member's session.
	LiveHeartbeat time.Duration `env:"CARELOOP_LIVE_HEARTBEAT" yaml:"live_heartbeat"`
	// SandboxJobDelay is how long the sandbox's publish and mass-send jobs
	// take before their events come.
	SandboxJobDelay time.Duration `env:"CARELOOP_SANDBOX_JOB_DELAY" yaml:"sandbox_job_delay"`
	// PublishPoll is how long a publish task or a mass-send batch may go
	// without WeChat's event before careloop asks WeChat (and asks again as
	// often).
	PublishPoll time.Duration `env:"CARELOOP_PUBLISH_POLL" yaml:"publish_poll"`
	// The dispatcher.
	ServeWorkers      bool          `env:"CARELOOP_SERVE_WORKERS" yaml:"serve_workers"`
	NotifyRate        int64         `env:"CARELOOP_NOTIFY_RATE" yaml:"notify_rate"`
	NotifyConcurrency int64         `env:"CARELOOP_NOTIFY_CONCURRENCY" yaml:"notify_concurrency"`
	NotifyLease       time.Duration `env:"CARELOOP_NOTIFY_LEASE" yaml:"notify_lease"`
	QuietHours        string        `env:"CARELOOP_QUIET_HOURS" yaml:"quiet_hours"`
	// DemoPatients: sandbox mode books demo patients for today on first
	// start, so that the front desk has a day to work on.
	DemoPatients bool `env:"CARELOOP_DEMO_PATIENTS" yaml:"demo_patients"`
	// Points.
	PointsPerYuan int64 `env:"CARELOOP_POINTS_PER_YUAN" yaml:"points_per_yuan"`
	SurveyPoints  int64 `env:"CARELOOP_SURVEY_POINTS" yaml:"survey_points"`
	// NotifyReasons maps each notice reason to WeChat templates (file only;
	// sandbox templates by default).
	NotifyReasons []notify.Reason `yaml:"notify_reasons"`
}

// Defaults returns the configuration with nothing set.
func Defaults() Config {
	return Config{
		Addr:            ":8080",
		DataDir:         "./data",
		RedisPrefix:     "careloop:",
		Mode:            ModeSandbox,
		WeChatTimeout:   10 * time.Second,
		MaxBodyBytes:    1 << 20,
		ShutdownGrace:   20 * time.Second,
		LiveHeartbeat:   25 * time.Second,
		SandboxJobDelay: 2 * time.Second,
		PublishPoll:     time.Minute,
		LogLevel:        "info",
		ServeWorkers:    true,
		DemoPatients:    true,
		OAMode:          "safe",
		PointsPerYuan:   1,
		SurveyPoints:    50,
		MySQLMaxConns:   50,
		MPLoginsPerIP:   300,
		NotifyRate:      200, NotifyConcurrency: 32, NotifyLease: time.Minute,
		QuietHours: "21:00-08:00",
	}
}

// Load reads the YAML file at path (if any), then the environment, fills
// sandbox defaults where the mode allows, and validates.
func Load(path string, getenv func(string) string) (Config, error) {
	cfg := Defaults()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			return cfg, fmt.Errorf("parse config %s: %w", path, err)
		}
	}
	if err := applyEnv(&cfg, getenv); err != nil {
		return cfg, err
	}
	cfg.Mode = strings.ToLower(strings.TrimSpace(cfg.Mode))
	if cfg.Mode == ModeSandbox {
		fillSandbox(&cfg)
	}
	return cfg, cfg.Validate()
}

func applyEnv(cfg *Config, getenv func(string) string) error {
	v := reflect.ValueOf(cfg).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		name := t.Field(i).Tag.Get("env")
		raw := getenv(name)
		if raw == "" {
			continue
		}
		f := v.Field(i)
		switch f.Interface().(type) {
		case string:
			f.SetString(raw)
		case time.Duration:
			d, err := time.ParseDuration(raw)
			if err != nil {
				return fmt.Errorf("%s: %q is not a duration (e.g. 10s)", name, raw)
			}
			f.SetInt(int64(d))
		case int64:
			n, err := strconv.ParseInt(raw, 10, 64)
			if err != nil {
				return fmt.Errorf("%s: %q is not a number", name, raw)
			}
			f.SetInt(n)
		case bool:
			b, err := strconv.ParseBool(raw)
			if err != nil {
				return fmt.Errorf("%s: %q is not true or false", name, raw)
			}
			f.SetBool(b)
		}
	}
	return nil
}

func fillSandbox(c *Config) {
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(&c.MPAppID, sandboxMPAppID)
	set(&c.MPSecret, sandboxMPSecret)
	set(&c.OAAppID, sandboxOAAppID)
	set(&c.OASecret, sandboxOASecret)
	set(&c.OAToken, sandboxOAToken)
	set(&c.OAAESKey, sandboxOAAESKey)
	set(&c.TokenSecret, sandboxToken)
	set(&c.DataKey, sandboxDataKeyB64)
	set(&c.IntegrationSecrets, SandboxIntegrationSecrets)
}

// Validate checks the configuration; in production it refuses missing or
// default secrets and the embedded database.
func (c Config) Validate() error {
	var problems []string
	switch c.Mode {
	case ModeSandbox, ModeProduction:
	default:
		problems = append(problems, fmt.Sprintf("CARELOOP_MODE must be %q or %q, not %q", ModeSandbox, ModeProduction, c.Mode))
	}
	if _, _, _, err := c.Keyring(); err != nil {
		problems = append(problems, err.Error())
	}
	if c.Mode == ModeProduction {
		need := []struct{ name, val, def string }{
			{"CARELOOP_MP_APPID", c.MPAppID, sandboxMPAppID},
			{"CARELOOP_MP_SECRET", c.MPSecret, sandboxMPSecret},
			{"CARELOOP_OA_APPID", c.OAAppID, sandboxOAAppID},
			{"CARELOOP_OA_SECRET", c.OASecret, sandboxOASecret},
			{"CARELOOP_OA_TOKEN", c.OAToken, sandboxOAToken},
			{"CARELOOP_OA_AES_KEY", c.OAAESKey, sandboxOAAESKey},
			{"CARELOOP_TOKEN_SECRET", c.TokenSecret, sandboxToken},
		}
		if c.DataKeys == "" || c.DataKey != "" {
			need = append(need, struct{ name, val, def string }{"CARELOOP_DATA_KEY", c.DataKey, sandboxDataKeyB64})
		}
		if strings.Contains(c.DataKeys, sandboxDataKeyB64) {
			problems = append(problems, "CARELOOP_DATA_KEYS holds the sandbox default key")
		}
		for _, n := range need {
			switch {
			case n.val == "":
				problems = append(problems, n.name+" is not set")
			case n.val == n.def:
				problems = append(problems, n.name+" is the sandbox default")
			}
		}
		sandboxSecrets := service.ParseSecrets(SandboxIntegrationSecrets)
		for source, secret := range service.ParseSecrets(c.IntegrationSecrets) {
			switch {
			case secret == sandboxSecrets[source] || c.IntegrationSecrets == SandboxIntegrationSecrets:
				problems = append(problems, "CARELOOP_INTEGRATION_SECRETS: the secret of "+source+" is the sandbox default")
			case len(secret) < 32:
				problems = append(problems, "CARELOOP_INTEGRATION_SECRETS: the secret of "+source+" must be at least 32 characters")
			}
		}
		if len(c.MetricsToken) < 16 {
			problems = append(problems, "CARELOOP_METRICS_TOKEN must be set (at least 16 characters): /metrics is not public in production")
		}
		if c.TokenSecret != "" && c.TokenSecret != sandboxToken && len(c.TokenSecret) < 32 {
			problems = append(problems, "CARELOOP_TOKEN_SECRET must be at least 32 characters")
		}
		if c.MySQLDSN == "" {
			problems = append(problems, "CARELOOP_MYSQL_DSN is not set (production does not run on the embedded SQLite)")
		}
		if c.WeChatAPIBase != "" {
			problems = append(problems, "CARELOOP_WECHAT_API_BASE points WeChat elsewhere; it is for sandbox mode only")
		}
	}
	if c.OAMode != "safe" && c.OAMode != "plain" {
		problems = append(problems, `CARELOOP_OA_MODE must be "safe" or "plain"`)
	}
	if _, _, err := c.QuietWindow(); err != nil {
		problems = append(problems, err.Error())
	}
	if c.NotifyRate <= 0 || c.NotifyConcurrency <= 0 || c.NotifyLease < 5*time.Second {
		problems = append(problems, "CARELOOP_NOTIFY_RATE and CARELOOP_NOTIFY_CONCURRENCY must be positive and CARELOOP_NOTIFY_LEASE at least 5s")
	}
	if (c.AdminUser == "") != (c.AdminPassword == "") {
		problems = append(problems, "CARELOOP_ADMIN_USER and CARELOOP_ADMIN_PASSWORD go together")
	}
	if c.AdminPassword != "" && len(c.AdminPassword) < 8 {
		problems = append(problems, "CARELOOP_ADMIN_PASSWORD must be at least 8 characters")
	}
	if _, err := c.Proxies(); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return errors.New("configuration refused:\n  - " + strings.Join(problems, "\n  - "))
	}
	return nil
}

// Keyring decodes the data keys: CARELOOP_DATA_KEYS ("id:base64", the first
// current) and CARELOOP_DATA_KEY as key 1. It returns the keys, the
// current id and the lookup-hash key id (0: the default).
func (c Config) Keyring() (map[byte][]byte, byte, byte, error) {
	keys := map[byte][]byte{}
	var current byte
	for _, part := range strings.Split(c.DataKeys, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		idText, b64, ok := strings.Cut(part, ":")
		id, err := strconv.Atoi(strings.TrimSpace(idText))
		k, kerr := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
		if !ok || err != nil || id < 1 || id > 255 || kerr != nil || len(k) != 32 {
			return nil, 0, 0, errors.New("CARELOOP_DATA_KEYS must be id:base64-of-32-bytes pairs (ids 1–255), comma separated")
		}
		if _, dup := keys[byte(id)]; dup {
			return nil, 0, 0, fmt.Errorf("CARELOOP_DATA_KEYS names key %d twice", id)
		}
		keys[byte(id)] = k
		if current == 0 {
			current = byte(id)
		}
	}
	if c.DataKey != "" || len(keys) == 0 {
		k, err := c.DataKeyBytes()
		if err != nil {
			return nil, 0, 0, err
		}
		if other, ok := keys[1]; ok && string(other) != string(k) {
			return nil, 0, 0, errors.New("CARELOOP_DATA_KEY is key 1, and CARELOOP_DATA_KEYS gives key 1 another value")
		}
		keys[1] = k
		if current == 0 {
			current = 1
		}
	}
	if c.HashKeyID < 0 || c.HashKeyID > 255 || (c.HashKeyID > 0 && keys[byte(c.HashKeyID)] == nil) {
		return nil, 0, 0, fmt.Errorf("CARELOOP_HASH_KEY_ID %d is not a key of the ring", c.HashKeyID)
	}
	return keys, current, byte(c.HashKeyID), nil
}

// Sealer builds the keyring the configuration describes.
func (c Config) Sealer() (*service.Sealer, error) {
	keys, current, hashID, err := c.Keyring()
	if err != nil {
		return nil, err
	}
	return service.NewKeyring(keys, current, hashID)
}

// DataKeyBytes decodes the data-encryption key (base64 of 32 bytes).
func (c Config) DataKeyBytes() ([]byte, error) {
	if c.DataKey == "" {
		return nil, errors.New("CARELOOP_DATA_KEY is not set")
	}
	k, err := base64.StdEncoding.DecodeString(c.DataKey)
	if err != nil || len(k) != 32 {
		return nil, errors.New("CARELOOP_DATA_KEY must be base64 of 32 bytes (e.g. `openssl rand -base64 32`)")
	}
	return k, nil
}

// QuietWindow parses CARELOOP_QUIET_HOURS ("21:00-08:00"; empty: none)
// into minutes after midnight.
func (c Config) QuietWindow() (int, int, error) {
	if strings.TrimSpace(c.QuietHours) == "" {
		return 0, 0, nil
	}
	parts := strings.Split(c.QuietHours, "-")
	var mins [2]int
	for i := 0; i < 2 && len(parts) == 2; i++ {
		t, err := time.Parse("15:04", strings.TrimSpace(parts[i]))
		if err != nil {
			break
		}
		mins[i] = t.Hour()*60 + t.Minute()
		if i == 1 {
			return mins[0], mins[1], nil
		}
	}
	return 0, 0, fmt.Errorf("CARELOOP_QUIET_HOURS must look like 21:00-08:00, not %q", c.QuietHours)
}

// NotifyConfig is the dispatcher's configuration.
func (c Config) NotifyConfig() notify.Config {
	nc := notify.DefaultConfig()
	nc.QuietStart, nc.QuietEnd, _ = c.QuietWindow()
	nc.RatePerSecond = int(c.NotifyRate)
	nc.Concurrency = int(c.NotifyConcurrency)
	nc.Lease = c.NotifyLease
	if len(c.NotifyReasons) > 0 {
		nc.Reasons = c.NotifyReasons
	}
	return nc
}

// SQLitePath is where the embedded database lives.
func (c Config) SQLitePath() string { return filepath.Join(c.DataDir, "careloop.db") }

// Sandbox reports whether the WeChat sandbox is in use.
func (c Config) Sandbox() bool { return c.Mode == ModeSandbox }

// Masked returns the configuration as key/value pairs for the log, with
// secrets masked.
func (c Config) Masked() []any {
	var out []any
	v := reflect.ValueOf(c)
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		val := fmt.Sprint(v.Field(i).Interface())
		if f.Tag.Get("secret") == "true" && val != "" {
			val = "***"
		}
		out = append(out, f.Tag.Get("yaml"), val)
	}
	return out
}

// Proxies parses TrustedProxies into addresses and CIDR ranges.
func (c Config) Proxies() ([]string, error) {
	var out []string
	for _, p := range strings.Split(c.TrustedProxies, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if _, _, err := net.ParseCIDR(p); err != nil && net.ParseIP(p) == nil {
			return nil, fmt.Errorf("CARELOOP_TRUSTED_PROXIES: %q is neither an address nor a CIDR range", p)
		}
		out = append(out, p)
	}
	return out, nil
}
