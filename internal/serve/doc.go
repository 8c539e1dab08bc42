// Package serve implements HTTP and HTTPS serving of a published library
// tree: the read-only file handler a vSphere subscribed content library
// (VCSP) pulls lib.json, items.json, item.json and the OVF/VMDK/ISO files
// from, and the listeners (plain HTTP, HTTPS from certificate files or from
// an ACME CA) that carry it.
//
// Decisions:
//
//   - Read-only: GET and HEAD only; anything else is 405 with
//     "Allow: GET, HEAD". Files go through http.ServeContent, so Range,
//     If-Modified-Since, If-Range and an exact Content-Length (what vCenter
//     and VCD need for ISO items) come from net/http.
//   - Content types come from the extension of the requested name (case
//     insensitive), never from the resolved target (the version store may be
//     content addressed) and never from sniffing: .json application/json,
//     .ovf text/xml, .mf/.txt/.cert text/plain, .iso
//     application/x-iso9660-image, everything else application/octet-stream.
//     Every response carries X-Content-Type-Options: nosniff.
//   - A request path is refused with 404 when any segment starts with "."
//     ("..", ".", ".clr", ".partial", dotfiles) or it holds a NUL or a
//     backslash, before the file system is touched. 404 rather than 403 so
//     that nothing about the tree leaks.
//   - The path under Root is resolved with filepath.EvalSymlinks and served
//     only if the result is inside the resolved Root or inside one of the
//     resolved AllowedRoots (the immutable version store the published tree
//     links into), and if its path relative to that root has no segment
//     starting with "." either, so a link into a staging area is not
//     followed. Root and AllowedRoots are resolved per request, so a root
//     that is itself a symlink can be swapped atomically.
//   - Only regular files and directories are served. The resolved path is
//     Lstat'ed before it is opened, it is opened with O_NONBLOCK|O_NOFOLLOW
//     (a FIFO swapped in later cannot block the handler, a symlink swapped in
//     later fails to open) and the opened file must be the one that was
//     Lstat'ed (os.SameFile).
//   - Directories: 404 unless Browse (including "/"); with Browse, an HTML
//     listing (names escaped, links percent-encoded, dot entries and entries
//     that would not be served hidden, sorted by name) and a 301 to the
//     slashed name for a directory requested without its trailing slash, as
//     net/http does. There is no index.html magic. A file requested with a
//     trailing slash is 404.
//   - Basic auth (when Password is set) covers everything, listings included,
//     except the Extra paths named in ExtraNoAuth. The user defaults to
//     "vcsp", the fixed user name vSphere sends. User and password are
//     compared in constant time (over their SHA-256, so lengths do not leak
//     either). A failure is 401 with
//     WWW-Authenticate: Basic realm="clr", charset="UTF-8".
//   - Extra handlers match exact (decoded) paths and run before the file
//     handler; they do their own method checks.
//   - The access log is one slog Info record per request; the log wrapper
//     keeps io.ReaderFrom so large files still go out through sendfile.
//   - Run creates every listener before it calls Config.Ready, so ":0" works
//     and a caller can print the bound addresses. It stops on ctx.Done with
//     http.Server.Shutdown (default 10 s), then closes what is left and
//     reports the timeout. There is no write timeout: VMDKs are large and
//     links are slow; ReadHeaderTimeout and IdleTimeout bound idle clients.
//   - TLS 1.2 is the minimum. File certificates live in a FileCert read on
//     every handshake; Reload (for SIGHUP) swaps it atomically and keeps the
//     old one when the new files do not load. Thumbprints prints the SHA-1 and
//     SHA-256 fingerprints vCenter asks for when subscribing to a self-signed
//     or private-CA endpoint.
//   - ACME uses golang.org/x/crypto/acme/autocert with a required DirCache
//     (no cache would mean a new certificate, and a rate-limit hit, on every
//     start). The Terms of Service are accepted: configuring ACME is the
//     operator's consent. Both http-01 (on the HTTP listener) and tls-alpn-01
//     (on the HTTPS listener) are offered. The host policy strips a port from
//     the Host header and lower-cases it, because a CA (Pebble) that
//     validates on a port other than 80 sends "name:port". Challenge
//     requests are logged.
//   - With TLS and Redirect, the HTTP listener answers 301 (GET, HEAD) or 308
//     (other methods, so the body is re-sent) to https://host[:port] with the
//     path and query kept; NoRedirect paths (default "/healthz") still go to
//     the handler so plain-HTTP monitoring keeps working. Without Redirect
//     the HTTP listener serves the handler too. Without TLS, Redirect is
//     ignored.
package serve

import "errors"

// ErrInvalidConfig is wrapped by every error about HandlerOptions or Config
// that the caller can fix: a missing root, conflicting TLS sources, a bad
// Extra path.
var ErrInvalidConfig = errors.New("invalid configuration")

// ErrNoCertificate is returned by LeafOf for a tls.Certificate without a
// certificate chain.
var ErrNoCertificate = errors.New("no certificate")
