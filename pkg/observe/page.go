package observe

import (
	_ "embed"
	"net/http"
)

// statusPage is the self-contained status page: no external assets, charts drawn as inline SVG
// from /history.json, tables from /status.json.
//
//go:embed statuspage.html
var statusPage []byte

func servePage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
	_, _ = w.Write(statusPage)
}
