package replay

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// truncates orders a replay's truncates as the live sink's barriers do, within the one process:
// a partition that reaches a truncate's copy is held there (paused, its records after the copy
// left out of the rounds), and the truncate is applied once every partition of the topic is
// held at it or has no more records in the replay, with nothing of those partitions in flight.
// The held partitions then resume after their copies. A replay whose ranges start between the
// copies of one truncate (a start time or offsets that fall among them) could leave partitions
// held at different truncates with nothing else to read: the earliest truncate is then applied.
type truncates struct {
	s        *sink.Sink
	held     map[sink.TopicPartition]*heldCopy
	inflight map[sink.TopicPartition]int // rounds polled and not yet committed
}

type heldCopy struct {
	rec  *kgo.Record
	copy kafka.TruncateCopy
}

func newTruncates(s *sink.Sink) *truncates {
	return &truncates{s: s, held: map[sink.TopicPartition]*heldCopy{}, inflight: map[sink.TopicPartition]int{}}
}

// cut returns the records a round may take of a partition, and the copy it stops at, if any.
func (t *truncates) cut(cl *kgo.Client, tp sink.TopicPartition, recs []*kgo.Record) ([]*kgo.Record, *kgo.Record) {
	if t.held[tp] != nil {
		return nil, nil // fetched before the pause took effect; read again after the copy
	}
	for i, r := range recs {
		if c, ok := t.s.TruncateBarrier(r); ok {
			t.held[tp] = &heldCopy{rec: r, copy: c}
			cl.PauseFetchPartitions(map[string][]int32{tp.Topic: {tp.Partition}})
			return recs[:i], r
		}
	}
	return recs, nil
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

// apply applies a truncate and resumes every partition held at it right after its copy,
// committing that position so that a resumed replay does not read the copies again.
func (t *truncates) apply(ctx context.Context, r *ranges, h *heldCopy) error {
	if err := t.s.ApplyTruncate(ctx, h.rec); err != nil {
		return err
	}
	offsets := kadm.Offsets{}
	for tp, o := range t.held {
		if o.rec.Topic != h.rec.Topic || o.copy.ID != h.copy.ID {
			continue
		}
		next := o.rec.Offset + 1
		r.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{tp.Topic: {tp.Partition: {Epoch: -1, Offset: next}}})
		r.cl.ResumeFetchPartitions(map[string][]int32{tp.Topic: {tp.Partition}})
		delete(t.held, tp)
		end := r.end[tp]
		next = min(next, end)
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
