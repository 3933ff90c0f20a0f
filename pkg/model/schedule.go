package model

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
)

// Scheduler runs each model of the pipeline once at start, then on its schedule (every) and
// after committed changes to its refresh_on tables (debounced). A failed run is logged, counted
// and recorded for status, and retried at the model's next schedule or trigger.
type Scheduler struct {
	r       *Runner
	active  func() bool // whether this process may run the models now; nil: always
	log     *zap.Logger
	models  []config.Model
	wake    map[string]chan struct{} // per model: a refresh is due
	byTable map[string][]string      // captured table -> models refreshed on it
}

// NewScheduler schedules the pipeline's models on r.
func NewScheduler(r *Runner) *Scheduler {
	s := &Scheduler{r: r, log: r.log, models: r.cfg.Models, wake: map[string]chan struct{}{}, byTable: map[string][]string{}}
	for _, m := range s.models {
		s.wake[m.Name] = make(chan struct{}, 1)
		for _, t := range m.RefreshOn {
			s.byTable[t] = append(s.byTable[t], m.Name)
		}
	}
	return s
}

// OnlyWhile makes the scheduler run models only while active says so: a capture process runs
// them while it is the active capture, not as a standby (whose runs would take turns with the
// active one's, each rebuilding the state the other left). A run due while inactive is made as
// soon as the process becomes active.
func (s *Scheduler) OnlyWhile(active func() bool) { s.active = active }

// minDebounce is the shortest wait between a commit capture reads and the run it triggers:
// PostgreSQL writes a transaction's commit record, which capture may read at once, a moment
// before the transaction becomes visible to other sessions' snapshots.
const minDebounce = 100 * time.Millisecond

// standbyPoll is how often an inactive scheduler checks whether it may run a due model.
const standbyPoll = 2 * time.Second

// Committed is capture's commit hook (capture.WithCommitHook): it marks the models refreshed on
// any of tables as due, without blocking.
func (s *Scheduler) Committed(tables []string) {
	for _, t := range tables {
		for _, name := range s.byTable[t] {
			select {
			case s.wake[name] <- struct{}{}:
			default: // already due
			}
		}
	}
}

// Run runs the models until ctx ends; it returns nil then.
func (s *Scheduler) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, m := range s.models {
		wg.Go(func() { s.loop(ctx, m) })
	}
	wg.Wait()
	return nil
}

func (s *Scheduler) loop(ctx context.Context, m config.Model) {
	var sched *config.Schedule
	if m.Every != "" {
		if sc, err := config.ParseEvery(m.Every); err == nil { // validated with the config
			sched = &sc
		}
	}
	tick := time.NewTimer(0) // the first run, at start: changes made while backflow was down
	defer tick.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	pending := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake[m.Name]:
			if !pending { // the first change starts the wait; later ones join the same run
				pending = true
				debounce.Reset(max(m.Debounce, minDebounce))
			}
			continue
		case <-debounce.C:
			pending = false
			if s.active != nil && !s.active() {
				continue
			}
		case <-tick.C:
			if s.active != nil && !s.active() {
				tick.Reset(standbyPoll) // due: run once this process is the active one
				continue
			}
			if sched != nil {
				tick.Reset(time.Until(sched.Next(time.Now())))
			}
		}
		s.runOnce(ctx, m)
	}
}

func (s *Scheduler) runOnce(ctx context.Context, m config.Model) {
	start := time.Now()
	res, err := s.r.Run(ctx, m.Name)
	switch {
	case ctx.Err() != nil:
	case errors.Is(err, ErrBusy):
		s.log.Info("model run skipped: another process is running it", zap.String("model", m.Name))
	case err != nil:
		s.log.Error("model run failed; retried at its next schedule", zap.String("model", m.Name), zap.Error(err))
	default:
		s.log.Info("model run", zap.String("model", m.Name), zap.Int64("run", res.Run), zap.Int64("rows", res.Rows),
			zap.Any("changes", res.Changes), zap.Bool("rebuilt", res.Rebuilt), zap.Duration("took", time.Since(start)))
	}
}
