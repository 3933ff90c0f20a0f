package sinktest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/backflow-dev/backflow/pkg/sink"
)

func (k *kit) insertUpdateDelete() {
	k.open(false)
	k.mustApply(upsert(1, item("apple", 3, "1.50", "red")), upsert(2, item("pear", 5, "2.25", "green")),
		upsert(3, item("plum", 7, "0.99", "blue")))
	k.check("after inserting 1, 2, 3")
	k.mustApply(upsert(2, item("pear", 6, "2.30", "yellow")), del(3))
	k.check("after updating 2 and deleting 3")
	k.mustApply(upsert(4, item("fig", 1, "3.00", "x")), upsert(5, item("kiwi", 2, "0.50", "y")))
	k.mustApply(del(4), upsert(5, item("kiwi", 3, "0.55", "z")), del(1))
	k.check("after a batch of deletes around an update")
	// Deleting a key the target does not have is not an error: it may be a replay.
	k.mustApply(del(99))
	k.check("after deleting an absent key")
}

func (k *kit) idempotentReapply() {
	k.open(false)
	k.mustApply(upsert(2, item("pear", 5, "2.25", "green")))
	// Batches are coalesced: each key appears once in a batch (sink.Batch).
	recs := []sink.Record{upsert(1, item("apple", 3, "1.50", "red")), del(2), upsert(3, item("plum", 7, "0.99", nil))}
	b := k.batch(recs...)
	for i := range 2 {
		if err := k.apply(b); err != nil {
			k.t.Fatalf("apply #%d of the same batch: %v", i+1, err)
		}
	}
	for _, r := range recs {
		k.expect(r)
	}
	k.check("after applying the same batch twice")
}

func (k *kit) unchangedFieldsKept() {
	k.open(false)
	k.mustApply(upsert(1, item("apple", 3, "1.50", "a long text kept by the target")))
	// An update whose note was an unchanged TOAST value: the field is absent from the record.
	r := upsert(1, map[string]any{Name: "apple", Qty: int64(4), Price: "1.60"})
	k.mustApply(r)
	k.check("after an update without the note field")
	r = upsert(1, map[string]any{Qty: int64(5)})
	k.mustApply(r)
	k.check("after an update of qty alone")
}

func (k *kit) truncateInOrder() {
	k.open(false)
	k.mustApply(upsert(1, item("apple", 3, "1.50", "a")), upsert(2, item("pear", 5, "2.25", "b")))
	// Rows before the truncate go, rows after it stay, in the same batch and in earlier ones.
	k.mustApply(upsert(3, item("plum", 7, "0.99", "c")), truncate(), upsert(4, item("fig", 1, "3.00", "d")))
	k.check("after a batch with a truncate between upserts")
	// Nothing is coalesced across a truncate, so a key may come again after one in a batch.
	k.mustApply(upsert(6, item("lime", 1, "0.10", "f")), del(4), truncate(), upsert(6, item("lime", 2, "0.11", "f2")),
		upsert(7, item("date", 2, "0.20", "g")), truncate(), upsert(7, item("date", 3, "0.21", "g2")),
		upsert(8, item("yuzu", 3, "0.30", "h")))
	k.check("after a batch with two truncates and keys written on both sides of them")
	k.mustApply(truncate())
	k.check("after a batch of a truncate alone")
	k.mustApply(upsert(5, item("kiwi", 2, "0.50", "e")))
	k.check("after writing again after a truncate")
}

func (k *kit) offsetsAtomic() {
	k.open(false)
	store, ok := k.o.Conn.(sink.OffsetStore)
	if !ok {
		k.t.Skip("does not apply: the connector keeps no offsets in the target (not a sink.OffsetStore)")
	}
	k.mustApply(upsert(1, item("apple", 3, "1.50", "a")), upsert(2, item("pear", 5, "2.25", "b")))
	k.wantOffset(store, k.offset, "after a batch")
	// A batch whose records were all filtered out still moves the offset.
	k.offset += 5
	if err := k.apply(&sink.Batch{Sink: SinkName, Topic: TopicName, NextOffset: k.offset}); err != nil {
		k.t.Fatalf("apply an empty batch: %v", err)
	}
	k.wantOffset(store, k.offset, "after an empty batch")
	// Offsets are kept per sink.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// (ErrOffsetsNotKept says none too: the target has rows but no offsets of that sink.)
	if got, err := store.Offsets(ctx, "another-sink", []string{TopicName}); (err != nil && !errors.Is(err, sink.ErrOffsetsNotKept)) || len(got[TopicName]) != 0 {
		k.t.Fatalf("offsets of another sink = %v, %v; want none", got, err)
	}
	// The runtime keeps each partition's topic ID fingerprint under partition -1 - p, through
	// ResetOffsets, next to the offsets (sink.identityPartition).
	if rs, ok := store.(sink.OffsetResetter); ok {
		const fingerprint = int64(1) << 62
		if err := rs.ResetOffsets(ctx, SinkName, map[string]map[int32]int64{TopicName: {-1: fingerprint}}); err != nil {
			k.t.Fatalf("store a topic ID fingerprint under partition -1: %v", err)
		}
		got, err := store.Offsets(ctx, SinkName, []string{TopicName})
		if err != nil || got[TopicName][-1] != fingerprint {
			k.t.Fatalf("stored under partition -1: %v, %v; want %d", got, err, fingerprint)
		}
		k.wantOffset(store, k.offset, "after storing a topic ID fingerprint")
	}
	before := k.offset
	if k.a.Poison == nil {
		k.t.Fatal("sinktest: an OffsetStore needs Adapter.Poison to check that a failed batch stores no offset")
	}
	bad := upsert(4, item("bad", 1, "1", "x"))
	k.a.Poison(&bad)
	// A batch that fails as a whole leaves neither rows nor offset behind; a connector that
	// reports the poison record in a PartialError has applied the others, but not the offset:
	// the runtime applies the rejected record again on its own, and a crash meanwhile must not
	// skip it.
	b := k.batch(upsert(3, item("plum", 7, "0.99", "c")), bad)
	rejected := k.refusal(k.apply(b), 2, "a batch with a record the target refuses")
	if slices.Equal(rejected, []int{1}) {
		k.expect(b.Records[0])
	}
	k.wantOffset(store, before, "after a batch with a record the target refuses")
	k.check("after a batch with a record the target refuses")
}

func (k *kit) wantOffset(store sink.OffsetStore, want int64, when string) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got, err := store.Offsets(ctx, SinkName, []string{TopicName})
	if err != nil {
		k.t.Fatalf("%s: Offsets: %v", when, err)
	}
	if off, ok := got[TopicName][0]; !ok || off != want {
		k.t.Fatalf("%s: stored offset of %s/0 = %v (stored: %v), want %d", when, TopicName, off, got, want)
	}
}

func (k *kit) poisonIsolated() {
	k.open(false)
	if k.a.Poison == nil {
		k.t.Fatal("sinktest: Adapter.Poison is nil; declare the case in Skip with the reason")
	}
	k.mustApply(upsert(1, item("apple", 3, "1.50", "a")))
	bad := upsert(3, item("bad", 1, "1", "x"))
	k.a.Poison(&bad)
	recs := []sink.Record{upsert(2, item("pear", 5, "2.25", "b")), bad, upsert(4, item("plum", 7, "0.99", "c"))}
	rejected := k.refusal(k.apply(k.batch(recs...)), len(recs), "a batch with a poison record")
	if !slices.Equal(rejected, []int{1}) {
		// The batch failed as a whole: the runtime bisects it down to the record at fault, so
		// each good record must apply on its own and the poison one must fail on its own.
		for _, r := range []sink.Record{recs[0], recs[2]} {
			k.mustApply(r)
		}
		k.refusal(k.apply(k.batch(bad)), 1, "the poison record alone")
	} else {
		k.expect(recs[0])
		k.expect(recs[2])
	}
	k.check("after a batch with a poison record")
}

func (k *kit) softDelete() {
	k.open(true)
	k.mustApply(upsert(1, item("apple", 3, "1.50", "a")), upsert(2, item("pear", 5, "2.25", "b")))
	// With on_delete: soft_delete the runtime turns a delete into an upsert of the key and the
	// soft-delete field set to true (pkg/sink process.go); the other fields are absent, so kept.
	soft := sink.Record{Op: sink.OpUpsert, Key: map[string]any{KeyField: int64(1)}, KeyOrder: []string{KeyField},
		Fields: map[string]any{KeyField: int64(1), DeletedAt: true}, FieldOrder: []string{KeyField, DeletedAt}}
	if err := k.apply(k.batch(soft)); err != nil {
		k.t.Fatalf("soft delete: %v", err)
	}
	got := k.o.Rows(k.t)
	row, ok := got["1"]
	if !ok {
		k.t.Fatalf("soft-deleted row 1 is gone from the target: %v", got)
	}
	if text(row[DeletedAt]) == nil {
		k.t.Fatalf("soft-deleted row 1 has no %s: %v", DeletedAt, row)
	}
	if text(got["2"][DeletedAt]) != nil {
		k.t.Fatalf("row 2 was not deleted but has %s: %v", DeletedAt, got["2"])
	}
	k.check("after a soft delete (its fields kept)")
}

func (k *kit) unknownField() {
	k.open(false)
	r := upsert(1, item("apple", 3, "1.50", "a"))
	r.Fields[extraField] = "surprise"
	r.FieldOrder = append(r.FieldOrder, extraField)
	err := k.apply(k.batch(r))
	switch {
	case err == nil:
		k.expect(r) // written, the unknown field passed on or left out
	case sink.IsRetryable(err):
		// The target waits for the column to be added (a schema migration running behind the
		// mapping): allowed, as long as it says which field it waits for.
		if !strings.Contains(err.Error(), extraField) {
			k.t.Fatalf("a record with an unknown field waits without naming the field: %v", err)
		}
	default:
		// Refused for good, to the dead-letter topic.
		k.refusal(err, 1, "a record with a field the target does not have")
	}
	k.check("after a record with an unknown field")
	k.mustApply(upsert(2, item("pear", 5, "2.25", "b")))
	k.check("after a good record following one with an unknown field")
}

func (k *kit) keyChange() {
	k.open(false)
	k.mustApply(upsert(1, item("apple", 3, "1.50", "a")), upsert(2, item("pear", 5, "2.25", "b")))
	// A source update of the key arrives as a delete of the old key and an insert of the new.
	k.mustApply(del(1), upsert(10, item("apple", 3, "1.50", "a")))
	k.check("after moving key 1 to 10")
	// And swapping two keys' rows in one batch (each key appears once in a batch).
	k.mustApply(upsert(2, item("apple", 3, "1.50", "a")), upsert(10, item("pear", 5, "2.25", "b")))
	k.check("after swapping the rows of keys 2 and 10")
}

func (k *kit) nulls() {
	k.open(false)
	k.mustApply(upsert(1, item("apple", 3, "1.50", "a")))
	k.mustApply(upsert(1, item("apple", 3, "1.50", nil)))
	k.check("after setting note to null")
	k.mustApply(upsert(2, item("pear", 5, "2.25", nil)))
	k.check("after inserting a row with a null note")
	k.mustApply(upsert(2, item("pear", 5, "2.25", "")))
	k.check("after setting note to the empty text (not null)")
}

func (k *kit) unicode() {
	k.open(false)
	k.mustApply(
		upsert(1, item("Zoë — 東京 🚀", 3, "1.50", `quotes ' " and \ backslash`)),
		upsert(2, item("ﬁ ligature, e\u0301 combining, \u200b zero width", 5, "2.25", "tab\tand\nnewline")),
		upsert(3, item("Ελληνικά, עברית, العربية", 7, "0.99", "%s %d {id} :: *?[]")),
	)
	k.check("after writing unicode and special characters")
}

func (k *kit) bigNumbers() {
	k.open(false)
	k.mustApply(
		upsert(1, item("max", 9223372036854775807, "12345678901234567890.123456789", "a")),
		upsert(2, item("min", -9223372036854775808, "-0.000000001", "b")),
		upsert(3, item("zero", 0, "0", "c")),
	)
	k.check("after writing the largest integers and long decimals")
}
