package transport

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"

	"github.com/clr-suite/clr/internal/server"
)

// testProxy is the proxy named by HTTP_PROXY and HTTPS_PROXY for the whole
// test binary. http.ProxyFromEnvironment reads the environment once per
// process, so TestMain sets it before any test runs. Loopback targets
// (127.0.0.1, localhost) never go through a proxy; only names routed with
// testProxy.route do.
var testProxy *fakeProxy

func TestMain(m *testing.M) {
	// The ssh:// tests run clr-server, which starts rsync through this
	// test binary under Landlock (server.Config.Sandbox): in that role
	// the binary never gets past SandboxMain.
	server.SandboxMain()
	// Every connection stays on 127.0.0.0/8: a name that is not routed
	// through the proxy fails here instead of reaching DNS or the network.
	testHookDial = func(addr string) error {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return err
		}
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.To4() != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("test dial to %s refused: tests stay on 127.0.0.0/8", addr)
	}
	testProxy = newFakeProxy()
	for _, k := range []string{"http_proxy", "https_proxy", "no_proxy", "NO_PROXY", "REQUEST_METHOD"} {
		os.Unsetenv(k)
	}
	os.Setenv("HTTP_PROXY", testProxy.srv.URL)
	os.Setenv("HTTPS_PROXY", testProxy.srv.URL)
	code := m.Run()
	testProxy.srv.Close()
	os.Exit(code)
}

// fakeProxy is a forward proxy: it forwards absolute-form GETs and tunnels
// CONNECTs for the host:port names it was told about, to loopback servers.
type fakeProxy struct {
	srv *httptest.Server

	mu     sync.Mutex
	routes map[string]string // requested host:port -> loopback address
	seen   []string          // "GET host:port" and "CONNECT host:port" in order
}

func newFakeProxy() *fakeProxy {
	p := &fakeProxy{routes: map[string]string{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	return p
}

// route sends requests for name (host:port) to the loopback address addr.
func (p *fakeProxy) route(name, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routes[name] = addr
}

// requests returns what the proxy was asked so far.
func (p *fakeProxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

func (p *fakeProxy) serve(w http.ResponseWriter, r *http.Request) {
	name := r.Host
	if _, _, err := net.SplitHostPort(name); err != nil {
		name = net.JoinHostPort(name, "80")
	}
	p.mu.Lock()
	p.seen = append(p.seen, r.Method+" "+name)
	upstream, ok := p.routes[name]
	p.mu.Unlock()
	if !ok {
		http.Error(w, "no route to "+name, http.StatusBadGateway)
		return
	}
	if r.Method == http.MethodConnect {
		p.tunnel(w, upstream)
		return
	}
	out, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+upstream+r.URL.RequestURI(), nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	direct := &http.Transport{}
	defer direct.CloseIdleConnections()
	resp, err := direct.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

func (p *fakeProxy) tunnel(w http.ResponseWriter, upstream string) {
	up, err := net.Dial("tcp", upstream)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer up.Close()
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, buf); done <- struct{}{} }()
	go func() { io.Copy(conn, up); done <- struct{}{} }()
	<-done
}
