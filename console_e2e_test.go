package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"careloop/tabular"
	"careloop/testenv"
)

// The staff console in a real browser (console/e2e/smoke.mjs: playwright-core
// driving Debian's Chromium) against the real binary, on SQLite and on
// MariaDB + Redis. Needs node, the console's node_modules (npm ci) and
// /usr/bin/chromium: skipped without them, failed under CI=true.
// noQuietHours lets the campaign in the browser test go out at whatever
// hour the suite runs (quiet hours are tested in the app's tests).
const noQuietHours = "CARELOOP_QUIET_HOURS=00:00-00:00"

func TestConsoleInBrowser(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		unavailableTool(t, "node")
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		unavailableTool(t, "chromium (apt-get install -y chromium)")
	}
	if _, err := os.Stat(filepath.Join("console", "node_modules", "playwright-core")); err != nil {
		unavailableTool(t, "console/node_modules (cd console && npm ci)")
	}
	backends := []struct {
		name string
		env  func(t *testing.T) []string
	}{
		{"sqlite", func(t *testing.T) []string { return []string{"CARELOOP_DATA_DIR=" + t.TempDir(), noQuietHours} }},
		{"mysql", func(t *testing.T) []string {
			rdb := testenv.Redis(t) // skips, or fails under CI, without Redis
			prefix := "careloop-e2e-" + testenv.Suffix() + ":"
			t.Cleanup(func() { testenv.DeletePrefix(rdb.Client(), prefix) })
			return []string{"CARELOOP_DATA_DIR=" + t.TempDir(), "CARELOOP_MYSQL_DSN=" + testenv.NewMySQLDatabase(t),
				"CARELOOP_REDIS_ADDR=" + testenv.RedisAddr(), "CARELOOP_REDIS_PREFIX=" + prefix, noQuietHours}
		}},
	}
	his := filepath.Join(t.TempDir(), "his-5000.xlsx")
	if err := writeHISExport(his, 5000); err != nil {
		t.Fatal(err)
	}
	for _, b := range backends {
		name := b.name
		t.Run(name, func(t *testing.T) {
			c := startChild(t, b.env(t))
			cmd := exec.Command("node", "e2e/smoke.mjs")
			cmd.Dir = "console"
			cmd.Env = append(os.Environ(), "BASE=http://"+c.addr, "CHROMIUM="+chromium, "SHOTS="+name, "HIS_XLSX="+his)
			out, err := cmd.CombinedOutput()
			t.Logf("%s", out)
			if err != nil {
				t.Fatalf("browser checks failed on %s: %v\ncareloop:\n%s", name, err, c.out.String())
			}
		})
	}
}

// writeHISExport writes a HIS export of n patients as a workbook, every
// 50th row with a phone the import refuses.
func writeHISExport(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	i := 0
	return tabular.WriteXLSX(f, "患者", func() ([]any, bool) {
		defer func() { i++ }()
		switch {
		case i == 0:
			return []any{"姓名", "HIS号", "手机号", "性别", "出生日期"}, true
		case i > n:
			return nil, false
		case i%50 == 0:
			return []any{fmt.Sprintf("导入患者%d", i), fmt.Sprintf("E2E%06d", i), "1234", "女", "1975-03-01"}, true
		}
		return []any{fmt.Sprintf("导入患者%d", i), fmt.Sprintf("E2E%06d", i), fmt.Sprintf("136%08d", i), "男", "1980-06-15"}, true
	})
}

func unavailableTool(t *testing.T, what string) {
	t.Helper()
	if testenv.InCI() {
		t.Fatalf("CI=true and %s is missing", what)
	}
	t.Skipf("%s missing: the browser test is skipped", what)
}
