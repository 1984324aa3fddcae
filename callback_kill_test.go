package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"careloop/app"
	"careloop/wxsandbox"
)

// A follower's message is answered and the process is killed (SIGKILL)
// before it could file the message (WeChat's user/info hangs): another
// process on the same database finishes it. Nothing is lost.
func TestCallbackSurvivesAKill(t *testing.T) {
	cfg, err := app.Load("", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	sb := wxsandbox.New(wxsandbox.Options{
		Apps: []wxsandbox.App{
			{AppID: cfg.MPAppID, Secret: cfg.MPSecret, Kind: wxsandbox.MiniProgram},
			{AppID: cfg.OAAppID, Secret: cfg.OASecret, Kind: wxsandbox.OfficialAccount},
		},
		DevLogins: true,
	})
	srv := httptest.NewServer(sb.Handler())
	defer srv.Close()
	const follower = "wx-killed-follower"
	sb.SetFollower(cfg.OAAppID, follower, true, "")
	// Linking the unknown follower will hang until the process is gone.
	sb.FailNext(wxsandbox.APIUserInfo, 1, wxsandbox.Fault{Delay: time.Minute})
	env := []string{"CARELOOP_DATA_DIR=" + t.TempDir(), "CARELOOP_WECHAT_API_BASE=" + srv.URL}

	first := startChild(t, env)
	now := time.Now()
	cb, err := wxsandbox.BuildCallback(cfg.OAToken, cfg.OAAESKey, cfg.OAAppID, wxsandbox.TextMessage(follower, "体检前一天晚上可以喝水吗", 990001, now), true, now)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := http.Post("http://"+first.addr+"/wechat/oa/callback?"+cb.Query.Encode(), "text/xml", bytes.NewReader(cb.Body))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || time.Since(start) > 5*time.Second {
		t.Fatalf("callback: %d after %s", res.StatusCode, time.Since(start))
	}
	// Killed right after answering, with the message not yet filed.
	if err := first.cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()

	second := startChild(t, env)
	_, body := post(t, "http://"+second.addr+"/api/admin/login", "", map[string]string{"username": app.DemoAdminUser, "password": app.DemoAdminPassword})
	tok, _ := body["token"].(string)
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, _ := http.NewRequest("GET", "http://"+second.addr+"/api/admin/conversations?scope=all", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Items []struct {
				LastMessage string `json:"last_message"`
			} `json:"items"`
		}
		_ = json.NewDecoder(res.Body).Decode(&list)
		res.Body.Close()
		filed := 0 // beside the demo patient's question
		for _, it := range list.Items {
			if strings.Contains(it.LastMessage, "喝水") {
				filed++
			}
		}
		if filed == 1 {
			return // filed by the second process, once
		}
		if time.Now().After(deadline) {
			t.Fatalf("the message was lost with the killed process: %+v\n%s", list, second.out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
