package replay

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// truncates orders a replay's truncates as the live sink's barriers do, within the one process:
// a partition that reaches a truncate's copy is held there (paused, its records after the copy
// kept aside), and the truncate is applied once every partition of the topic is held at it or
// has no more records in the replay, with nothing of those partitions in flight. The held
// partitions then resume with the records kept aside. A replay whose ranges start between the
// copies of one truncate (a start time or offsets that fall among them) could leave partitions
// held at different truncates with nothing else to read: the earliest truncate is then applied.
//
// A held partition is paused, never moved: franz-go's cursor of a paused partition stays right
// after the last record it handed out, so resuming it continues after the records kept aside.
// (Moving it back to the copy with SetOffsets, as before, restarts the client's consumer
// session; replays hung after such moves, in about one run in ten of a test, with records left.)
type truncates struct {
	s        truncateSink
	held     map[sink.TopicPartition]*heldCopy
	released map[sink.TopicPartition][]*kgo.Record // records kept aside, of partitions resumed
	inflight map[sink.TopicPartition]int           // rounds polled and not yet committed
}

// truncateSink is what truncates need of a sink.
type truncateSink interface {
	TruncateBarrier(r *kgo.Record) (kafka.TruncateCopy, bool)
	ApplyTruncate(ctx context.Context, r *kgo.Record) error
}

type heldCopy struct {
	rec   *kgo.Record
	copy  kafka.TruncateCopy
	after []*kgo.Record // records handed out after the copy, markers included
}

func newTruncates(s truncateSink) *truncates {
	return &truncates{s: s, held: map[sink.TopicPartition]*heldCopy{},
		released: map[sink.TopicPartition][]*kgo.Record{}, inflight: map[sink.TopicPartition]int{}}
}

// next is where the held partition's consumer goes on: after the records kept aside.
func (h *heldCopy) next() int64 {
	if n := len(h.after); n > 0 {
		return h.after[n-1].Offset + 1
	}
	return h.rec.Offset + 1
}

// keep keeps records of a held partition aside, after those already kept, and reports whether
// it did. franz-go hands out nothing of a paused partition; this keeps the order if it did.
func (t *truncates) keep(tp sink.TopicPartition, recs []*kgo.Record) bool {
	h := t.held[tp]
	if h != nil {
		h.after = append(h.after, recs...)
	}
	return h != nil
}

// cut returns the data records a round may take of the first n of a partition's records (those
// within its range), and the copy it stops at, if any: the partition is then held and paused,
// and all its records after the copy are kept aside.
func (t *truncates) cut(cl *kgo.Client, tp sink.TopicPartition, recs []*kgo.Record, n int) ([]*kgo.Record, *kgo.Record) {
	for i, r := range recs[:n] {
		if r.Attrs.IsControl() {
			continue
		}
		if c, ok := t.s.TruncateBarrier(r); ok {
			t.held[tp] = &heldCopy{rec: r, copy: c, after: slices.Clone(recs[i+1:])}
			cl.PauseFetchPartitions(map[string][]int32{tp.Topic: {tp.Partition}})
			return kafka.DataRecords(recs[:i]), r
		}
	}
	return kafka.DataRecords(recs[:n]), nil
}

// ready reports whether every partition of a held truncate's topic is held at it or done.
func (t *truncates) ready(r *ranges, h *heldCopy) bool {
	for p := range h.copy.Partitions {
		tp := sink.TopicPartition{Topic: h.rec.Topic, Partition: p}
		if t.inflight[tp] > 0 {
			return false
		}
		if o := t.held[tp]; o != nil {
			if o.copy.ID != h.copy.ID {
				return false
			}
			continue
		}
		if end, ok := r.end[tp]; ok && r.polled[tp] < end {
			return false
		}
	}
	return true
}

// step applies the held truncates that are ready and releases their partitions. With force, and
// none ready, it applies the earliest held truncate.
func (t *truncates) step(ctx context.Context, r *ranges, force bool) (bool, error) {
	var earliest *heldCopy
	for _, h := range t.held {
		if t.ready(r, h) {
			return true, t.apply(ctx, r, h)
		}
		if earliest == nil || lsnLess(h.copy.ID, earliest.copy.ID) {
			earliest = h
		}
	}
	if force && earliest != nil {
		return true, t.apply(ctx, r, earliest)
	}
	return false, nil
}

// stuck reports whether every partition the replay still reads is held at a copy, with nothing
// in flight: no truncate can become ready.
func (t *truncates) stuck(r *ranges) bool {
	if len(t.held) == 0 {
		return false
	}
	for _, n := range t.inflight {
		if n > 0 {
			return false
		}
	}
	for tp, end := range r.end {
		if r.polled[tp] < end && t.held[tp] == nil {
			return false
		}
	}
	return true
}

// settle applies every truncate that can be applied now.
func (t *truncates) settle(ctx context.Context, r *ranges) error {
	for {
		applied, err := t.step(ctx, r, t.stuck(r))
		if err != nil || !applied {
			return err
		}
	}
}

// polled counts a round's partitions as in flight; committed counts them as applied.
func (t *truncates) polled(round sink.Round) {
	for tp := range round {
		t.inflight[tp]++
	}
}

func (t *truncates) committed(round sink.Round) {
	for tp := range round {
		if t.inflight[tp]--; t.inflight[tp] <= 0 {
			delete(t.inflight, tp)
		}
	}
}

// apply applies a truncate and resumes every partition held at it right after its copy, with
// the records kept aside next, committing that position so that a resumed replay does not read
// the copies again.
func (t *truncates) apply(ctx context.Context, r *ranges, h *heldCopy) error {
	if err := t.s.ApplyTruncate(ctx, h.rec); err != nil {
		return err
	}
	offsets := kadm.Offsets{}
	for tp, o := range t.held {
		if o.rec.Topic != h.rec.Topic || o.copy.ID != h.copy.ID {
			continue
		}
		delete(t.held, tp)
		if len(o.after) > 0 {
			t.released[tp] = o.after
		}
		end := r.end[tp]
		next := min(o.rec.Offset+1, end)
		if next < end { // a range that ends at its copy stays paused (see ranges.finish)
			r.cl.ResumeFetchPartitions(map[string][]int32{tp.Topic: {tp.Partition}})
		}
		r.polled[tp] = next
		r.progress.Add(next - r.committed[tp])
		r.committed[tp] = next
		offsets.Add(kadm.Offset{Topic: tp.Topic, Partition: tp.Partition, At: next, LeaderEpoch: -1, Metadata: endMeta(end)})
	}
	resp, err := r.adm.CommitOffsets(ctx, r.group, offsets)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return fmt.Errorf("commit replay progress after truncate %s of %s to group %s: %w", h.copy.ID, h.rec.Topic, r.group, err)
	}
	return nil
}

// lsnLess orders truncate ids, WAL positions, by position (by text when not one).
func lsnLess(a, b string) bool {
	la, errA := pglogrepl.ParseLSN(a)
	lb, errB := pglogrepl.ParseLSN(b)
	if errA != nil || errB != nil {
		return strings.Compare(a, b) < 0
	}
	return la < lb
}
