package sink

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// A stall is lag that does not move while nothing explains it: the partition has records past
// the group's committed offset, that offset has not changed for stall_after, and the partition
// is not waiting on its target (retries, a pause, a mapping hold), which shows elsewhere. Whatever
// the cause (a lost fetch position, a commit that never lands, a bug), the sink says so instead
// of looking healthy: a Warn log naming the partitions, backflow_sink_stalled, and status.

// stallDetector judges partitions from samples of their committed and end offsets.
type stallDetector struct {
	after time.Duration
	seen  map[TopicPartition]stallSample
	// markers holds, per partition, what a read between the committed and end offsets found
	// (kafka.OnlyMarkers), so that it is read once per pair of offsets: a topic written in Kafka
	// transactions ends in a marker no reader is handed, so the group stays short of the end
	// with no lag to speak of.
	markers map[TopicPartition]markerCheck
}

// markerCheck is what a read of a partition from its committed offset at up to end found: only
// markers (and aborted records), or something to apply (or a transaction still open).
type markerCheck struct {
	at, end int64
	only    bool
}

type stallSample struct {
	committed int64
	since     time.Time // when committed last changed, or the partition last had no lag or waited
}

// observe takes one sample of a partition and reports whether it is stalled. committed is -1
// when the group has none; start is the partition's first offset, where the sink then begins.
func (d *stallDetector) observe(now time.Time, tp TopicPartition, committed, start, end int64, waiting bool) bool {
	prev, ok := d.seen[tp]
	lag := end - max(committed, start)
	if !ok || prev.committed != committed || lag <= 0 || waiting {
		d.seen[tp] = stallSample{committed: committed, since: now}
		return false
	}
	return now.Sub(prev.since) >= d.after
}

// forget drops the partitions not in keep (revoked: their new owner judges them).
func (d *stallDetector) forget(keep map[TopicPartition]bool) {
	maps.DeleteFunc(d.seen, func(tp TopicPartition, _ stallSample) bool { return !keep[tp] })
	maps.DeleteFunc(d.markers, func(tp TopicPartition, _ markerCheck) bool { return !keep[tp] })
}

// end is the end offset of tp to judge its lag by: the position the group is at when only
// markers lie between it and the partition's end.
func (d *stallDetector) end(tp TopicPartition, committed, start, end int64) int64 {
	if d.markers[tp] == (markerCheck{at: committed, end: end, only: true}) {
		return max(committed, start)
	}
	return end
}

// unchecked says whether the records of tp from committed to end have not been read yet.
func (d *stallDetector) unchecked(tp TopicPartition, committed, end int64) bool {
	c, ok := d.markers[tp]
	return !ok || c.at != committed || c.end != end
}

// owned tracks the partitions this group member is assigned.
type owned struct {
	mu    sync.Mutex
	parts map[TopicPartition]bool
}

func (o *owned) add(assigned map[string][]int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.parts == nil {
		o.parts = map[TopicPartition]bool{}
	}
	for t, ps := range assigned {
		for _, p := range ps {
			o.parts[TopicPartition{t, p}] = true
		}
	}
}

func (o *owned) drop(gone map[string][]int32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for t, ps := range gone {
		for _, p := range ps {
			delete(o.parts, TopicPartition{t, p})
		}
	}
}

func (o *owned) snapshot() map[TopicPartition]bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.parts)
}

// waits counts, per partition, what it is waiting on now: a target that is down or rejects a
// record, a schema source that is down, a record its mapping cannot map. A waiting partition is
// not stalled. A wait on an unavailable target or schema source has no end of its own, so one
// that lasts stall_after shows as a problem, with why (see longWaits); the others are bounded
// by the retry policy, and a mapping hold shows on its own.
type waits struct {
	mu sync.Mutex
	at map[TopicPartition]*wait
}

type wait struct {
	n      int
	since  time.Time // when the partition started waiting
	why    string    // the last error of an open-ended wait; "" for a bounded one
	paused bool      // the target asked for a long wait (a pause, which shows as such)
}

// begin marks tp waiting until the returned function is called; why is the error of an
// open-ended wait, "" for a bounded one.
func (w *waits) begin(topic string, partition int32, why string) (end func()) {
	tp := TopicPartition{topic, partition}
	w.mu.Lock()
	if w.at == nil {
		w.at = map[TopicPartition]*wait{}
	}
	cur := w.at[tp]
	if cur == nil {
		cur = &wait{since: time.Now()}
		w.at[tp] = cur
	}
	cur.n++
	if why != "" {
		cur.why = why
	}
	w.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			w.mu.Lock()
			defer w.mu.Unlock()
			if why != "" { // what is left of the wait (a record's retries) is bounded again
				cur.why, cur.paused = "", false
			}
			if cur.n--; cur.n <= 0 {
				delete(w.at, tp)
			}
		})
	}
}

// note updates why tp waits, while it does.
func (w *waits) note(tp TopicPartition, why string, paused bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if cur := w.at[tp]; cur != nil {
		cur.why, cur.paused = why, paused
	}
}

func (w *waits) waiting(tp TopicPartition) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.at[tp] != nil
}

// longWait returns since when tp has waited on an unavailable target or schema source, and why;
// ok is false when it does not (or waits on a pause).
func (w *waits) longWait(tp TopicPartition) (since time.Time, why string, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := w.at[tp]
	if cur == nil || cur.why == "" || cur.paused {
		return time.Time{}, "", false
	}
	return cur.since, cur.why, true
}

// stallCheckEvery is how often the watcher samples offsets for a given stall_after: often enough
// to report a stall soon after stall_after, seldom enough not to load the brokers.
func stallCheckEvery(after time.Duration) time.Duration {
	return min(max(after/5, 50*time.Millisecond), 30*time.Second)
}

// watchStalls samples the group's committed offsets and the end offsets of this member's
// partitions until ctx ends, and reports stalls.
func (s *Sink) watchStalls(ctx context.Context, cl *kgo.Client, mine *owned) {
	after := s.cfg.StallAfter
	if after <= 0 {
		after = config.DefaultStallAfter
	}
	d := &stallDetector{after: after, seen: map[TopicPartition]stallSample{}, markers: map[TopicPartition]markerCheck{}}
	adm := kadm.NewClient(cl)
	tick := time.NewTicker(stallCheckEvery(after))
	defer tick.Stop()
	var reported []observe.StalledPartition
	var waited []observe.WaitingPartition
	absent := &absentTopics{since: map[string]time.Time{}, warned: map[string]bool{}}
	defer func() {
		s.metrics.Stalled(s.cfg.Name, nil)
		s.metrics.Waiting(s.cfg.Name, nil)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.warnAbsent(ctx, adm, absent, time.Now(), after)
		waiting := s.longWaits(time.Now(), after, mine.snapshot())
		s.reportWaits(waited, waiting)
		waited = waiting
		stalled, err := s.sampleStalls(ctx, adm, d, mine.snapshot())
		if err != nil {
			s.log.Debug("stall check: could not read offsets", zap.Error(err))
			continue
		}
		s.reportStalls(reported, stalled)
		reported = stalled
	}
}

// absentTopics tracks the sink's topics that do not exist: a sink waits for a topic capture has
// not created yet (a table with no change since capture started, under snapshot: never), but one
// that stays absent is as likely a wrong name, and the sink would wait for it without a word.
type absentTopics struct {
	since  map[string]time.Time // topic -> when it was first seen absent
	warned map[string]bool
}

// warnAbsent warns, once per absence (tracked in a), about each topic of the sink absent for
// after or longer.
func (s *Sink) warnAbsent(ctx context.Context, adm *kadm.Client, a *absentTopics, now time.Time, after time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	details, err := adm.ListTopics(ctx, s.topics...)
	if err != nil {
		return // the broker is away: other checks say so
	}
	for _, t := range s.topics {
		if d, ok := details[t]; ok && d.Err == nil {
			delete(a.since, t)
			delete(a.warned, t)
			continue
		}
		first, seen := a.since[t]
		if !seen {
			a.since[t] = now
			continue
		}
		if now.Sub(first) >= after && !a.warned[t] {
			a.warned[t] = true
			s.log.Warn("a topic this sink reads does not exist: it waits for it (capture creates a table's topic at its snapshot or first change); check the name",
				zap.String("topic", t), zap.Duration("absent_for", now.Sub(first).Round(time.Second)))
		}
	}
}

// longWaits returns the partitions of mine that have waited on an unavailable target or schema
// source for after or longer.
func (s *Sink) longWaits(now time.Time, after time.Duration, mine map[TopicPartition]bool) []observe.WaitingPartition {
	var out []observe.WaitingPartition
	for _, tp := range sortedParts(mine) {
		if since, why, ok := s.waits.longWait(tp); ok && now.Sub(since) >= after {
			out = append(out, observe.WaitingPartition{Topic: tp.Topic, Partition: tp.Partition, Since: since, Error: why})
		}
	}
	return out
}

// reportWaits sets the metric, and logs an error when a partition starts waiting for long.
func (s *Sink) reportWaits(before, now []observe.WaitingPartition) {
	s.metrics.Waiting(s.cfg.Name, now)
	was := map[TopicPartition]bool{}
	for _, p := range before {
		was[TopicPartition{p.Topic, p.Partition}] = true
	}
	for _, p := range now {
		if !was[TopicPartition{p.Topic, p.Partition}] {
			s.log.Error("a batch has waited on its target for stall_after; retrying until it succeeds, and nothing after it in the partition is applied",
				zap.String("topic", p.Topic), zap.Int32("partition", p.Partition), zap.Time("since", p.Since),
				zap.Duration("stall_after", s.cfg.StallAfter), zap.String("error", p.Error))
		}
	}
}

// sampleStalls takes one sample of every owned partition and returns the stalled ones.
func (s *Sink) sampleStalls(ctx context.Context, adm *kadm.Client, d *stallDetector, mine map[TopicPartition]bool) ([]observe.StalledPartition, error) {
	d.forget(mine)
	if len(mine) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	committed, err := adm.FetchOffsets(ctx, s.cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("fetch the committed offsets of group %s: %w", s.cfg.Name, err)
	}
	starts, ends, err := bounds(ctx, adm, s.topics)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []observe.StalledPartition
	for _, tp := range sortedParts(mine) {
		end, ok := ends.Lookup(tp.Topic, tp.Partition)
		if !ok || end.Err != nil {
			continue
		}
		start, _ := starts.Lookup(tp.Topic, tp.Partition)
		at := int64(-1)
		if c, ok := committed.Lookup(tp.Topic, tp.Partition); ok && c.Err == nil {
			at = c.At
		}
		// The lag as the group has it: Commit sets it from the fetch's high watermark, which
		// misses a group whose offsets went back or never moved.
		to := d.end(tp, at, start.Offset, end.Offset)
		stalled := d.observe(now, tp, at, start.Offset, to, s.waits.waiting(tp))
		if stalled && d.unchecked(tp, at, end.Offset) {
			if only, ok := s.onlyMarkers(ctx, tp, max(at, start.Offset), to); ok {
				d.markers[tp] = markerCheck{at: at, end: end.Offset, only: only}
			}
			if to = d.end(tp, at, start.Offset, end.Offset); to != end.Offset {
				stalled = d.observe(now, tp, at, start.Offset, to, false)
			}
		}
		s.metrics.ConsumerLag(s.cfg.Name, tp.Topic, tp.Partition, to-max(at, start.Offset))
		if stalled {
			out = append(out, observe.StalledPartition{Topic: tp.Topic, Partition: tp.Partition, Committed: at, End: end.Offset, Since: d.seen[tp].since})
		}
	}
	return out, nil
}

// onlyMarkers reports whether tp holds only transaction markers and aborted records from from
// to to (kafka.OnlyMarkers); ok is false when that could not be read (read again at the next
// sample).
func (s *Sink) onlyMarkers(ctx context.Context, tp TopicPartition, from, to int64) (only, ok bool) {
	opts, err := kafka.ClientOpts(s.kcfg, s.log)
	if err == nil {
		var found map[int32]bool
		found, err = kafka.OnlyMarkers(ctx, opts, tp.Topic, map[int32]int64{tp.Partition: from}, map[int32]int64{tp.Partition: to})
		only = found[tp.Partition]
	}
	if err != nil {
		s.log.Debug("stall check: could not read the records after the group's offset", zap.String("topic", tp.Topic),
			zap.Int32("partition", tp.Partition), zap.Error(err))
		return false, false
	}
	return only, true
}

// bounds lists the start and end offsets of topics.
func bounds(ctx context.Context, adm *kadm.Client, topics []string) (starts, ends kadm.ListedOffsets, err error) {
	if starts, err = adm.ListStartOffsets(ctx, topics...); err != nil {
		return nil, nil, fmt.Errorf("list start offsets of %v: %w", topics, err)
	}
	if ends, err = adm.ListEndOffsets(ctx, topics...); err != nil {
		return nil, nil, fmt.Errorf("list end offsets of %v: %w", topics, err)
	}
	return starts, ends, nil
}

// reportStalls sets the metric, and logs when partitions start or stop being stalled.
func (s *Sink) reportStalls(before, now []observe.StalledPartition) {
	s.metrics.Stalled(s.cfg.Name, now)
	key := func(p observe.StalledPartition) string { return fmt.Sprintf("%s/%d", p.Topic, p.Partition) }
	was := map[string]bool{}
	for _, p := range before {
		was[key(p)] = true
	}
	var fresh bool
	for _, p := range now {
		fresh = fresh || !was[key(p)]
	}
	switch {
	case fresh:
		names := make([]string, len(now))
		for i, p := range now {
			names[i] = p.String()
		}
		s.log.Warn("sink stalled: lag has not moved for stall_after while the target is reachable",
			zap.Strings("partitions", names), zap.Duration("stall_after", s.cfg.StallAfter))
	case len(now) == 0 && len(before) > 0:
		s.log.Info("sink no longer stalled")
	}
}

func sortedParts(m map[TopicPartition]bool) []TopicPartition {
	out := slices.Collect(maps.Keys(m))
	slices.SortFunc(out, func(a, b TopicPartition) int {
		return cmp.Or(strings.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	return out
}
