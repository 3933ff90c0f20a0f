package replay

import (
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"go.uber.org/zap"
)

// NewProgress shows progress on a terminal as a bar (done / total, rate, ETA), and otherwise as a
// log line every interval.
func NewProgress(total int64, terminal bool, w io.Writer, log *zap.Logger, what string) Progress {
	if terminal {
		return &barProgress{bar: progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(w),
			progressbar.OptionSetDescription(what),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("records"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionFullWidth(),
		)}
	}
	return &logProgress{log: log, total: total, what: what, start: time.Now(), every: 5 * time.Second}
}

type barProgress struct{ bar *progressbar.ProgressBar }

func (b *barProgress) Add(n int64) { _ = b.bar.Add64(n) }
func (b *barProgress) Finish()     { _ = b.bar.Finish() }

// logProgress logs plain progress lines for logs and pipes.
type logProgress struct {
	mu          sync.Mutex
	log         *zap.Logger
	total, done int64
	what        string
	start, last time.Time
	every       time.Duration
}

func (l *logProgress) Add(n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done += n
	if time.Since(l.last) < l.every {
		return
	}
	l.last = time.Now()
	l.line("progress")
}

func (l *logProgress) Finish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.line("finished")
}

func (l *logProgress) line(msg string) {
	elapsed := time.Since(l.start)
	rate := float64(l.done) / max(elapsed.Seconds(), 0.001)
	fields := []zap.Field{zap.String("what", l.what), zap.Int64("done", l.done), zap.Int64("total", l.total),
		zap.Float64("records_per_s", rate)}
	if rate > 0 && l.total > l.done {
		fields = append(fields, zap.Duration("eta", time.Duration(float64(l.total-l.done)/rate*float64(time.Second))))
	}
	l.log.Info(msg, fields...)
}
