package app_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"careloop/app"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigDefaultsAreSandbox(t *testing.T) {
	cfg, err := app.Load("", envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Mode != app.ModeSandbox || cfg.Addr != ":8080" || cfg.DataDir != "./data" || cfg.MySQLDSN != "" || cfg.RedisAddr != "" {
		t.Fatalf("defaults: %+v", cfg)
	}
	if cfg.MPAppID == "" || cfg.OAToken == "" || cfg.TokenSecret == "" {
		t.Fatal("sandbox mode must fill working WeChat defaults")
	}
	for i := 0; i+1 < len(cfg.Masked()); i += 2 {
		k, v := cfg.Masked()[i], cfg.Masked()[i+1]
		if (k == "mp_secret" || k == "token_secret" || k == "data_key") && v != "***" {
			t.Fatalf("%s is logged in clear: %v", k, v)
		}
	}
}

func TestConfigFileAndEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "careloop.yaml")
	os.WriteFile(path, []byte("addr: \":9000\"\nredis_addr: file-redis:6379\nwechat_timeout: 3s\n"), 0o600)
	cfg, err := app.Load(path, envOf(map[string]string{"CARELOOP_REDIS_ADDR": "env-redis:6379"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != ":9000" || cfg.RedisAddr != "env-redis:6379" || cfg.WeChatTimeout != 3*time.Second {
		t.Fatalf("file then env: %+v", cfg)
	}
	if _, err := app.Load("", envOf(map[string]string{"CARELOOP_WECHAT_TIMEOUT": "soon"})); err == nil || !strings.Contains(err.Error(), "CARELOOP_WECHAT_TIMEOUT") {
		t.Fatalf("a bad duration must name its variable: %v", err)
	}
}

func TestProductionRefusesDefaults(t *testing.T) {
	_, err := app.Load("", envOf(map[string]string{"CARELOOP_MODE": "production"}))
	if err == nil {
		t.Fatal("production started with nothing configured")
	}
	for _, want := range []string{"CARELOOP_MP_SECRET is not set", "CARELOOP_TOKEN_SECRET is not set", "CARELOOP_DATA_KEY is not set", "CARELOOP_MYSQL_DSN is not set", "CARELOOP_OA_AES_KEY is not set"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal does not say %q:\n%v", want, err)
		}
	}
	sandboxCfg, _ := app.Load("", envOf(nil))
	env := map[string]string{
		"CARELOOP_MODE": "production", "CARELOOP_MYSQL_DSN": "u:p@tcp(db:3306)/careloop",
		"CARELOOP_MP_APPID": "wxreal", "CARELOOP_MP_SECRET": "real-secret", "CARELOOP_OA_APPID": "wxrealoa",
		"CARELOOP_OA_SECRET": "real", "CARELOOP_OA_TOKEN": "tok", "CARELOOP_OA_AES_KEY": "k",
		"CARELOOP_TOKEN_SECRET": sandboxCfg.TokenSecret, "CARELOOP_DATA_KEY": sandboxCfg.DataKey,
	}
	_, err = app.Load("", envOf(env))
	if err == nil || !strings.Contains(err.Error(), "CARELOOP_TOKEN_SECRET is the sandbox default") || !strings.Contains(err.Error(), "CARELOOP_DATA_KEY is the sandbox default") {
		t.Fatalf("sandbox secrets in production: %v", err)
	}
	env["CARELOOP_TOKEN_SECRET"] = strings.Repeat("s", 40)
	env["CARELOOP_DATA_KEY"] = "bm90LTMyLWJ5dGVz"
	if _, err = app.Load("", envOf(env)); err == nil || !strings.Contains(err.Error(), "base64 of 32 bytes") {
		t.Fatalf("short data key: %v", err)
	}
	env["CARELOOP_DATA_KEY"] = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	// Integration secrets: the sandbox's or a short one is refused; /metrics needs its token.
	for _, c := range []struct{ secrets, want string }{
		{"peis=sandbox-peis-secret", "the secret of peis is the sandbox default"},
		{"peis=short-secret", "the secret of peis must be at least 32 characters"},
	} {
		env["CARELOOP_INTEGRATION_SECRETS"] = c.secrets
		if _, err = app.Load("", envOf(env)); err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "CARELOOP_METRICS_TOKEN must be set") {
			t.Fatalf("%s: %v", c.secrets, err)
		}
	}
	env["CARELOOP_INTEGRATION_SECRETS"] = "peis=" + strings.Repeat("p", 40)
	env["CARELOOP_METRICS_TOKEN"] = strings.Repeat("m", 24)
	if _, err = app.Load("", envOf(env)); err != nil {
		t.Fatalf("complete production config refused: %v", err)
	}
	if _, err = app.Load("", envOf(map[string]string{"CARELOOP_MODE": "staging"})); err == nil {
		t.Fatal("unknown mode accepted")
	}
}

// The keyring: CARELOOP_DATA_KEYS (the first current) beside CARELOOP_DATA_KEY
// as key 1; malformed rings are refused.
func TestDataKeyring(t *testing.T) {
	k2 := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	cfg, err := app.Load("", envOf(map[string]string{"CARELOOP_DATA_KEYS": "2:" + k2}))
	if err != nil {
		t.Fatal(err)
	}
	s, err := cfg.Sealer()
	if err != nil || s.Current() != 2 || fmt.Sprint(s.KeyIDs()) != "[1 2]" {
		t.Fatalf("ring: %v %v", err, s)
	}
	for _, bad := range []map[string]string{
		{"CARELOOP_DATA_KEYS": "2:short"},
		{"CARELOOP_DATA_KEYS": "0:" + k2},
		{"CARELOOP_DATA_KEYS": "2:" + k2 + ",2:" + k2},
		{"CARELOOP_DATA_KEYS": "2:" + k2, "CARELOOP_HASH_KEY_ID": "3"},
	} {
		if _, err := app.Load("", envOf(bad)); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
}
