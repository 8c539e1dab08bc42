package serve

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultUser is the basic-auth user name vSphere sends to a
// password-protected subscription.
const DefaultUser = "vcsp"

// Realm is the basic-auth realm announced in WWW-Authenticate.
const Realm = "clr"

// HandlerOptions configures Handler.
type HandlerOptions struct {
	// Root is the published library tree. Required; it must be a directory
	// when Handler is called.
	Root string
	// AllowedRoots are further directories that symlinks under Root may
	// resolve into (the immutable version store). A path that resolves
	// anywhere else is 404.
	AllowedRoots []string
	// Browse turns on HTML listings of directories. Off, every directory
	// (including "/") is 404.
	Browse bool
	// User is the basic-auth user name; "" means DefaultUser.
	User string
	// Password turns on basic auth for every request when non-empty.
	Password string
	// Extra maps exact request paths (such as "/healthz" or "/metrics") to
	// handlers that run before the file handler. Keys must start with "/".
	Extra map[string]http.Handler
	// ExtraNoAuth lists the Extra paths that skip basic auth.
	ExtraNoAuth []string
	// Logger receives one Info record per request; nil means no access log.
	Logger *slog.Logger
}

// Handler returns an http.Handler that serves opts.Root read-only. See the
// package documentation for the rules it applies.
func Handler(opts HandlerOptions) (http.Handler, error) {
	if opts.Root == "" {
		return nil, fmt.Errorf("serve: handler: %w: empty root", ErrInvalidConfig)
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("serve: handler: root %q: %w", opts.Root, err)
	}
	fi, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("serve: handler: root: %w: %w", ErrInvalidConfig, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("serve: handler: %w: root %q is not a directory", ErrInvalidConfig, root)
	}
	files := &fileHandler{root: root, browse: opts.Browse}
	for _, a := range opts.AllowedRoots {
		if a == "" {
			return nil, fmt.Errorf("serve: handler: %w: empty allowed root", ErrInvalidConfig)
		}
		abs, err := filepath.Abs(a)
		if err != nil {
			return nil, fmt.Errorf("serve: handler: allowed root %q: %w", a, err)
		}
		files.allowed = append(files.allowed, abs)
	}

	h := &handler{files: files, logger: opts.Logger}
	for p, eh := range opts.Extra {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("serve: handler: %w: extra path %q does not start with /", ErrInvalidConfig, p)
		}
		if eh == nil {
			return nil, fmt.Errorf("serve: handler: %w: extra path %q has no handler", ErrInvalidConfig, p)
		}
	}
	h.extra = opts.Extra
	h.noAuth = make(map[string]bool, len(opts.ExtraNoAuth))
	for _, p := range opts.ExtraNoAuth {
		if _, ok := opts.Extra[p]; !ok {
			return nil, fmt.Errorf("serve: handler: %w: no-auth path %q is not an extra path", ErrInvalidConfig, p)
		}
		h.noAuth[p] = true
	}
	if opts.Password != "" {
		user := opts.User
		if user == "" {
			user = DefaultUser
		}
		h.auth = &basicAuth{
			user: sha256.Sum256([]byte(user)),
			pass: sha256.Sum256([]byte(opts.Password)),
		}
	}
	return h, nil
}

// handler is the top of the chain: access log, extra paths, auth, files.
type handler struct {
	files  *fileHandler
	extra  map[string]http.Handler
	noAuth map[string]bool
	auth   *basicAuth // nil: no auth
	logger *slog.Logger
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if h.logger != nil {
		lw := &logWriter{ResponseWriter: w}
		start := time.Now()
		defer func() { lw.log(h.logger, r, "http request", time.Since(start)) }()
		w = lw
	}
	if eh, ok := h.extra[r.URL.Path]; ok {
		if h.auth != nil && !h.noAuth[r.URL.Path] && !h.auth.ok(r) {
			h.auth.deny(w)
			return
		}
		eh.ServeHTTP(w, r)
		return
	}
	if h.auth != nil && !h.auth.ok(r) {
		h.auth.deny(w)
		return
	}
	h.files.ServeHTTP(w, r)
}

// basicAuth holds the SHA-256 of the expected user and password, so the
// constant-time comparison is over equal lengths.
type basicAuth struct {
	user, pass [sha256.Size]byte
}

func (a *basicAuth) ok(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	if !ok {
		return false
	}
	uh := sha256.Sum256([]byte(u))
	ph := sha256.Sum256([]byte(p))
	return subtle.ConstantTimeCompare(uh[:], a.user[:])&subtle.ConstantTimeCompare(ph[:], a.pass[:]) == 1
}

func (a *basicAuth) deny(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="`+Realm+`", charset="UTF-8"`)
	http.Error(w, "401 unauthorized", http.StatusUnauthorized)
}

// contentTypes maps lower-case extensions to the Content-Type served;
// anything else is application/octet-stream.
var contentTypes = map[string]string{
	".json": "application/json",
	".ovf":  "text/xml",
	".mf":   "text/plain",
	".txt":  "text/plain",
	".cert": "text/plain",
	".iso":  "application/x-iso9660-image",
}

func contentType(name string) string {
	if ct, ok := contentTypes[strings.ToLower(path.Ext(name))]; ok {
		return ct
	}
	return "application/octet-stream"
}

// fileHandler serves the tree.
type fileHandler struct {
	root    string   // absolute, not resolved
	allowed []string // absolute, not resolved
	browse  bool
}

func notFound(w http.ResponseWriter) {
	http.Error(w, "404 page not found", http.StatusNotFound)
}

// cleanRequestPath checks a decoded URL path and returns it cleaned,
// relative to the root ("" for the root), and whether it had a trailing
// slash. ok is false for a path that must be refused.
func cleanRequestPath(p string) (rel string, slash, ok bool) {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\x00\\") {
		return "", false, false
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		if strings.HasPrefix(seg, ".") {
			return "", false, false
		}
	}
	return strings.TrimPrefix(path.Clean(p), "/"), strings.HasSuffix(p, "/"), true
}

// resolveBases resolves the root and the allowed roots; those that do not
// resolve are left out.
func (h *fileHandler) resolveBases() []string {
	bases := make([]string, 0, 1+len(h.allowed))
	for _, b := range append([]string{h.root}, h.allowed...) {
		if r, err := filepath.EvalSymlinks(b); err == nil {
			bases = append(bases, r)
		}
	}
	return bases
}

// resolve follows the symlinks in name and returns the result if it lies
// inside one of bases, with no dot segment below that base.
func resolve(bases []string, name string) (string, bool) {
	r, err := filepath.EvalSymlinks(name)
	if err != nil {
		return "", false
	}
	for _, b := range bases {
		if inside(b, r) {
			return r, true
		}
	}
	return "", false
}

// inside reports whether the clean absolute path p is base or below it,
// with no segment below base that starts with ".".
func inside(base, p string) bool {
	rel, err := filepath.Rel(base, p)
	if err != nil {
		return false
	}
	if rel == "." {
		return true
	}
	for seg := range strings.SplitSeq(filepath.ToSlash(rel), "/") {
		if strings.HasPrefix(seg, ".") {
			return false // "..": outside; ".x": hidden
		}
	}
	return true
}

func (h *fileHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	rel, slash, ok := cleanRequestPath(r.URL.Path)
	if !ok {
		notFound(w)
		return
	}
	bases := h.resolveBases()
	resolved, ok := resolve(bases, filepath.Join(h.root, filepath.FromSlash(rel)))
	if !ok {
		notFound(w)
		return
	}
	fi, err := os.Lstat(resolved)
	if err != nil {
		notFound(w)
		return
	}
	switch {
	case fi.Mode().IsRegular():
		if slash {
			notFound(w)
			return
		}
		serveFile(w, r, resolved, fi, rel)
	case fi.IsDir():
		if !h.browse {
			notFound(w)
			return
		}
		if !slash {
			loc := "./" + url.PathEscape(path.Base("/"+rel)) + "/"
			if r.URL.RawQuery != "" {
				loc += "?" + r.URL.RawQuery
			}
			w.Header().Set("Location", loc)
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
		serveDir(w, r, bases, resolved, fi)
	default:
		notFound(w)
	}
}

// openChecked opens resolved without blocking and checks that it is still
// the file fi describes.
func openChecked(resolved string, fi os.FileInfo) (*os.File, bool) {
	f, err := openNoBlock(resolved)
	if err != nil {
		return nil, false
	}
	st, err := f.Stat()
	if err != nil || st.Mode().Type() != fi.Mode().Type() || !os.SameFile(st, fi) {
		f.Close()
		return nil, false
	}
	return f, true
}

func serveFile(w http.ResponseWriter, r *http.Request, resolved string, fi os.FileInfo, rel string) {
	f, ok := openChecked(resolved, fi)
	if !ok {
		notFound(w)
		return
	}
	defer f.Close()
	// The type comes from the requested name: the target in the version
	// store may have no useful extension.
	w.Header().Set("Content-Type", contentType(rel))
	http.ServeContent(w, r, "", fi.ModTime(), f)
}

type listEntry struct {
	Name string
	Href string
	Size string
	Mod  string
}

var listTemplate = template.Must(template.New("list").Parse(`<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>Index of {{.Path}}</title></head>
<body>
<h1>Index of {{.Path}}</h1>
<pre>
{{- if .Parent}}
<a href="../">../</a>
{{- end}}
{{- range .Entries}}
<a href="{{.Href}}">{{.Name}}</a>	{{.Size}}	{{.Mod}}
{{- end}}
</pre>
</body>
</html>
`))

func serveDir(w http.ResponseWriter, r *http.Request, bases []string, resolved string, fi os.FileInfo) {
	d, ok := openChecked(resolved, fi)
	if !ok {
		notFound(w)
		return
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		http.Error(w, "500 internal server error", http.StatusInternalServerError)
		return
	}
	var list []listEntry
	for _, e := range ents {
		name := e.Name()
		if _, _, ok := cleanRequestPath("/" + name); !ok {
			continue // dot entries, NUL, backslash: a request would be refused
		}
		// Show exactly what would be served: follow links with the same
		// rules as a request.
		target, ok := resolve(bases, filepath.Join(resolved, name))
		if !ok {
			continue
		}
		st, err := os.Lstat(target)
		if err != nil {
			continue
		}
		u := &url.URL{Path: name}
		le := listEntry{Name: name, Mod: st.ModTime().UTC().Format(time.RFC3339)}
		switch {
		case st.IsDir():
			u.Path += "/"
			le.Name += "/"
			le.Size = "-"
		case st.Mode().IsRegular():
			le.Size = fmt.Sprint(st.Size())
		default:
			continue
		}
		le.Href = u.String()
		list = append(list, le)
	}
	slices.SortFunc(list, func(a, b listEntry) int { return strings.Compare(a.Name, b.Name) })

	var buf bytes.Buffer
	err = listTemplate.Execute(&buf, struct {
		Path    string
		Parent  bool
		Entries []listEntry
	}{r.URL.Path, r.URL.Path != "/", list})
	if err != nil {
		http.Error(w, "500 internal server error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", fmt.Sprint(buf.Len()))
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes()) // an error means the client went away
	}
}

// logWriter records the status and the body bytes of a response.
type logWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (l *logWriter) WriteHeader(code int) {
	if l.status == 0 && code >= 200 {
		l.status = code
	}
	l.ResponseWriter.WriteHeader(code)
}

func (l *logWriter) Write(b []byte) (int, error) {
	if l.status == 0 {
		l.status = http.StatusOK
	}
	n, err := l.ResponseWriter.Write(b)
	l.bytes += int64(n)
	return n, err
}

// ReadFrom keeps the sendfile path of the underlying ResponseWriter.
func (l *logWriter) ReadFrom(src io.Reader) (int64, error) {
	if l.status == 0 {
		l.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := l.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{l.ResponseWriter}, src)
	}
	l.bytes += n
	return n, err
}

// Flush lets streaming handlers (metrics) flush through the wrapper.
func (l *logWriter) Flush() {
	_ = http.NewResponseController(l.ResponseWriter).Flush() // not every writer flushes
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (l *logWriter) Unwrap() http.ResponseWriter { return l.ResponseWriter }

func (l *logWriter) log(logger *slog.Logger, r *http.Request, msg string, d time.Duration) {
	status := l.status
	if status == 0 {
		status = http.StatusOK
	}
	logger.LogAttrs(r.Context(), slog.LevelInfo, msg,
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.Int("status", status),
		slog.Int64("bytes", l.bytes),
		slog.String("remote", r.RemoteAddr),
		slog.Duration("duration", d),
	)
}
