package wxconfig

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"time"

	"github.com/silenceper/wechat/v2/util"
)

// APIHost is WeChat's API host, the one the SDK calls.
const APIHost = "api.weixin.qq.com"

// NewHTTPClient returns the client every WeChat call goes through, with a
// timeout. When base is set (a sandbox's URL), requests for APIHost go there
// instead; when inproc is set, they are served in-process by it and never
// touch the network.
func NewHTTPClient(timeout time.Duration, base string, inproc http.Handler) (*http.Client, error) {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 5 * time.Second,
	}
	var rt http.RoundTripper = tr
	switch {
	case inproc != nil:
		rt = inprocTransport{h: inproc, next: tr}
	case base != "":
		u, err := url.Parse(base)
		if err != nil || u.Host == "" {
			return nil, &Error{Op: "configure http client", Msg: "bad WeChat API base URL"}
		}
		rt = rewriteTransport{base: u, next: tr}
	}
	return &http.Client{Timeout: timeout, Transport: rt}, nil
}

// Install makes the SDK use c. The SDK keeps its client in a package variable
// (util.DefaultHTTPClient), so this is process-wide: call it once, from main,
// or from tests that do not run in parallel.
func Install(c *http.Client) { util.DefaultHTTPClient = c }

type rewriteTransport struct {
	base *url.URL
	next http.RoundTripper
}

func (t rewriteTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != APIHost {
		return t.next.RoundTrip(r)
	}
	r2 := r.Clone(r.Context())
	r2.URL.Scheme = t.base.Scheme
	r2.URL.Host = t.base.Host
	r2.URL.Path = strings.TrimSuffix(t.base.Path, "/") + r.URL.Path
	r2.Host = t.base.Host
	return t.next.RoundTrip(r2)
}

type inprocTransport struct {
	h    http.Handler
	next http.RoundTripper
}

func (t inprocTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != APIHost {
		return t.next.RoundTrip(r)
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	res := rec.Result()
	res.Request = r
	return res, nil
}
