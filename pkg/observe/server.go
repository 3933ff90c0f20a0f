package observe

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// Component names, as Metrics.Progress records them.
const (
	ComponentCapture    = "capture"
	sinkComponentPrefix = "sink/"
)

// SinkComponent is the component name of a sink.
func SinkComponent(name string) string { return sinkComponentPrefix + name }

// Server defaults.
const (
	// DefaultStaleAfter is how long a component may go without progress and still be ready.
	DefaultStaleAfter = 30 * time.Second
	// DefaultSampleEvery is how often the history samples the metrics.
	DefaultSampleEvery = 2 * time.Second
	// DefaultHistoryWindow is how much history the status page gets.
	DefaultHistoryWindow = 10 * time.Minute
	// statusTTL is how long a collected Status is served again, so viewers do not load the
	// database and the brokers.
	statusTTL = 2 * time.Second
)

// Listener timeouts: a client that sends its request slowly, reads the answer slowly or keeps
// an idle connection open cannot hold a connection (and its goroutine) for ever. The write
// timeout leaves room for a status collection, which may wait on the database and the brokers.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = time.Minute
	idleTimeout       = 2 * time.Minute
)

// StatusFunc collects the pipeline's Status, e.g. with Collect.
type StatusFunc func(ctx context.Context) (*Status, error)

// Server is the HTTP listener of a backflow process: /metrics, /healthz, /readyz,
// /status.json, /history.json and the status page at /, with a bearer token if one is set
// (WithToken) and timeouts on every connection.
type Server struct {
	addr        string
	m           *Metrics
	status      StatusFunc
	log         *zap.Logger
	components  []string
	staleAfter  time.Duration
	sampleEvery time.Duration
	window      time.Duration
	token       []byte
	hist        *History
	srv         *http.Server
	ln          net.Listener
	stop, done  chan struct{}
	stopOnce    sync.Once

	cacheMu  sync.Mutex
	cached   *Status
	cachedAt time.Time
}

// ServerOpt configures a Server.
type ServerOpt func(*Server)

// WithComponents names the components this process runs ("capture", SinkComponent(name)):
// /readyz wants recent progress from each, and the history shows them from the start.
func WithComponents(names ...string) ServerOpt {
	return func(s *Server) { s.components = append(s.components, names...) }
}

// WithStaleAfter sets how long a component may go without progress and still be ready.
func WithStaleAfter(d time.Duration) ServerOpt { return func(s *Server) { s.staleAfter = d } }

// WithSampleEvery sets how often the history samples the metrics.
func WithSampleEvery(d time.Duration) ServerOpt { return func(s *Server) { s.sampleEvery = d } }

// WithHistoryWindow sets how far back the history goes.
func WithHistoryWindow(d time.Duration) ServerOpt { return func(s *Server) { s.window = d } }

// WithToken makes every route but /healthz and /readyz (which probes call without credentials,
// and which tell nothing of the data) require the token: "Authorization: Bearer <token>", or
// Basic credentials with the token as the password, which browsers ask for on the status page
// and then send with its requests. An empty token requires nothing.
func WithToken(token string) ServerOpt {
	return func(s *Server) {
		if token != "" {
			s.token = []byte(token)
		}
	}
}

// NewServer returns a server for addr (host:port; port 0 picks a free one) over m. status may be
// nil: /status.json then answers 404. Start it with Start, stop it with Shutdown.
func NewServer(addr string, m *Metrics, status func(ctx context.Context) (*Status, error), log *zap.Logger, opts ...ServerOpt) *Server {
	if m == nil {
		m = NewMetrics()
	}
	if log == nil {
		log = zap.NewNop()
	}
	s := &Server{addr: addr, m: m, status: status, log: log, staleAfter: DefaultStaleAfter,
		sampleEvery: DefaultSampleEvery, window: DefaultHistoryWindow}
	for _, o := range opts {
		o(s)
	}
	s.hist = NewHistory(m, int(s.window/s.sampleEvery), s.components...)
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout}
	return s
}

// Handler returns the server's routes, for tests and for embedding in another mux.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.authorized(promhttp.HandlerFor(s.m.Registry, promhttp.HandlerOpts{Registry: s.m.Registry})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.Handle("GET /status.json", s.authorized(http.HandlerFunc(s.statusJSON)))
	mux.Handle("GET /history.json", s.authorized(http.HandlerFunc(s.historyJSON)))
	mux.Handle("GET /{$}", s.authorized(http.HandlerFunc(servePage)))
	return mux
}

// authorized lets a request through to h when the server has no token or the request carries
// it (see WithToken), and answers 401 otherwise.
func (s *Server) authorized(h http.Handler) http.Handler {
	if s.token == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.hasToken(r) {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Add("WWW-Authenticate", `Basic realm="backflow", charset="UTF-8"`)
		w.Header().Add("WWW-Authenticate", `Bearer realm="backflow"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{
			"error": "this listener requires http.token: send Authorization: Bearer <token>"})
	})
}

// hasToken reports whether r carries the token, compared in constant time.
func (s *Server) hasToken(r *http.Request) bool {
	got, ok := "", false
	if h := r.Header.Get("Authorization"); len(h) > len("Bearer ") && strings.EqualFold(h[:len("Bearer ")], "Bearer ") {
		got, ok = strings.TrimSpace(h[len("Bearer "):]), true
	} else {
		_, got, ok = r.BasicAuth()
	}
	return ok && subtle.ConstantTimeCompare([]byte(got), s.token) == 1
}

// Start listens on the address and serves in the background; it fails when the address
// cannot be bound. It also starts sampling the history.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("http listener on %s: %w", s.addr, err)
	}
	s.ln, s.stop, s.done = ln, make(chan struct{}), make(chan struct{})
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http listener stopped", zap.Error(err))
		}
	}()
	go s.sampleLoop()
	return nil
}

// Addr returns the address the server listens on (the chosen port when it was 0).
func (s *Server) Addr() string {
	if s.ln == nil {
		return s.addr
	}
	return s.ln.Addr().String()
}

// Shutdown stops sampling and shuts the listener down gracefully: in-flight requests finish
// until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.ln == nil {
		return nil
	}
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.done
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shut down http listener: %w", err)
	}
	return nil
}

// History returns the server's history of samples.
func (s *Server) History() *History { return s.hist }

func (s *Server) sampleLoop() {
	defer close(s.done)
	t := time.NewTicker(s.sampleEvery)
	defer t.Stop()
	s.hist.Sample(time.Now())
	for {
		select {
		case <-s.stop:
			return
		case now := <-t.C:
			s.hist.Sample(now)
		}
	}
}

// Readiness is /readyz's answer.
type Readiness struct {
	Ready      bool                      `json:"ready"`
	Components map[string]ComponentReady `json:"components"`
	// Stale names the components that are not ready.
	Stale      []string `json:"stale"`
	StaleAfter string   `json:"stale_after"`
}

// ComponentReady is one component's last progress. A sink without recent progress is still
// ready when it is Idle: Kafka says no record is waiting for it.
type ComponentReady struct {
	LastProgress *time.Time `json:"last_progress"`
	Ready        bool       `json:"ready"`
	Idle         bool       `json:"idle,omitempty"`
	Note         string     `json:"note,omitempty"`
}

// readyStatusTimeout bounds the status a readiness check may wait for.
const readyStatusTimeout = 5 * time.Second

// Ready reports whether every component made progress within the stale window at now. A sink
// waits for records without progress, so a stale sink is ready when the status (collected
// through the status func) shows it idle: no lag and no error.
func (s *Server) Ready(ctx context.Context, now time.Time) Readiness {
	last := s.m.LastProgress()
	names := s.components
	if len(names) == 0 {
		for n := range last {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	r := Readiness{Ready: len(names) > 0, Components: map[string]ComponentReady{}, Stale: []string{}, StaleAfter: s.staleAfter.String()}
	var st *Status
	for _, n := range names {
		cr := ComponentReady{}
		if t, ok := last[n]; ok {
			cr.LastProgress, cr.Ready = &t, now.Sub(t) <= s.staleAfter
		}
		if name, isSink := strings.CutPrefix(n, sinkComponentPrefix); !cr.Ready && isSink {
			if st == nil {
				st = s.readinessStatus(ctx)
			}
			cr = sinkIdle(cr, st, name)
		}
		if !cr.Ready {
			r.Ready = false
			r.Stale = append(r.Stale, n)
		}
		r.Components[n] = cr
	}
	return r
}

func (s *Server) readinessStatus(ctx context.Context) *Status {
	if s.status == nil {
		return &Status{}
	}
	ctx, cancel := context.WithTimeout(ctx, readyStatusTimeout)
	defer cancel()
	st, err := s.currentStatus(ctx)
	if err != nil {
		return &Status{Kafka: KafkaStatus{Error: err.Error()}}
	}
	return st
}

// sinkIdle makes a sink without recent progress ready when the status shows nothing waiting.
func sinkIdle(cr ComponentReady, st *Status, name string) ComponentReady {
	cr.Note = "no recent progress"
	if st.Kafka.Error != "" {
		cr.Note += "; lag unknown: " + st.Kafka.Error
		return cr
	}
	for _, k := range st.Sinks {
		switch {
		case k.Name != name:
		case k.Error != "":
			cr.Note += "; " + k.Error
		case k.Lag > 0:
			cr.Note += fmt.Sprintf("; %d records waiting", k.Lag)
		default:
			cr.Ready, cr.Idle, cr.Note = true, true, "idle: no records waiting"
		}
	}
	return cr
}

func (s *Server) readyz(w http.ResponseWriter, req *http.Request) {
	r := s.Ready(req.Context(), time.Now())
	code := http.StatusOK
	if !r.Ready {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, r)
}

func (s *Server) statusJSON(w http.ResponseWriter, r *http.Request) {
	if s.status == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "status is not available in this process"})
		return
	}
	st, err := s.currentStatus(r.Context())
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// currentStatus collects the status at most once per statusTTL and adds what this process's
// metrics know: when each sink last applied records, pauses, stalls, mapping holds and the
// snapshot in progress.
func (s *Server) currentStatus(ctx context.Context) (*Status, error) {
	s.cacheMu.Lock()
	defer s.cacheMu.Unlock()
	if s.cached == nil || time.Since(s.cachedAt) > statusTTL {
		st, err := s.status(ctx)
		if err != nil {
			return nil, fmt.Errorf("collect status: %w", err)
		}
		s.cached, s.cachedAt = st, time.Now()
	}
	out := *s.cached
	out.Sinks = append([]SinkStatus{}, s.cached.Sinks...)
	if !out.SinkOnly {
		out.Capture.SpillFailed = s.m.SpillFailure()
		out.Capture.Failing = s.m.CaptureFailing()
		out.Capture.GrownTopics = s.m.GrownTopics()
		out.Capture.UnfollowedTables = s.m.UnfollowedTables()
	}
	out.AddRunning(s.m.Running())
	if !out.SinkOnly {
		out.Capture.Snapshots = s.m.Snapshots()
	}
	for i := range out.Sinks {
		if t, ok := s.hist.LastApplied(out.Sinks[i].Name); ok {
			t = t.UTC()
			out.Sinks[i].LastApplied = &t
		}
	}
	return &out, nil
}

// HistoryResponse is /history.json's answer.
type HistoryResponse struct {
	EverySeconds  float64  `json:"every_seconds"`
	WindowSeconds float64  `json:"window_seconds"`
	Samples       []Sample `json:"samples"`
}

func (s *Server) historyJSON(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, HistoryResponse{EverySeconds: s.sampleEvery.Seconds(),
		WindowSeconds: s.window.Seconds(), Samples: s.hist.Samples()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
