// Package sinktest is the conformance kit every connector's tests run: one table of cases over
// the sink.Connector contract (pkg/sink/connector.go), against the connector's real server or its
// stub. A connector package passes it from one conformance_test.go:
//
//	func TestConformance(t *testing.T) {
//		sinktest.Run(t, sinktest.Adapter{Open: func(t *testing.T, p sink.Params) sinktest.Opened { … }})
//	}
//
// The kit writes rows of one shape, keyed by "id" (int64), with the fields "name" (text), "qty"
// (int64), "price" (exact decimal text) and "note" (text or null), and reads the target back
// through the adapter to compare it with what the records asked for.
package sinktest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// The fields of the kit's rows.
const (
	KeyField   = "id"
	Name       = "name"
	Qty        = "qty"
	Price      = "price"
	Note       = "note"
	DeletedAt  = "deleted_at" // the soft-delete column the kit asks for (Params.SoftDeleteColumn)
	SinkName   = "conformance"
	TopicName  = "conformance.public.items"
	extraField = "not_a_target_field"
)

// AllFields are the value fields of the kit's rows, in order.
var AllFields = []string{Name, Qty, Price, Note}

// Opened is a connector on a fresh, empty target and the way to read that target back.
type Opened struct {
	Conn sink.Connector
	// Rows returns the target's current rows by key (the id as decimal text), each with the kit's
	// fields it stores. A null may be a nil value or an absent field. With soft deletes, rows
	// marked deleted stay, with DeletedAt set to a non-nil value.
	Rows func(t testing.TB) map[string]map[string]any
}

// Adapter is what a connector gives the kit.
type Adapter struct {
	// Open starts from an empty target and returns a connector writing to it. p carries the
	// sink's name, Key ["id"] and, for the soft-delete case, SoftDeleteColumn; the adapter adds
	// With (and Log) and calls the connector's factory.
	Open func(t *testing.T, p sink.Params) Opened
	// Fields are the kit's value fields the target stores; default AllFields.
	Fields []string
	// Translate turns a kit record into the connector's own shape, for targets whose records
	// have a fixed form (Shopify's inventory levels); nil leaves records as they are.
	Translate func(r sink.Record) sink.Record
	// Poison changes an upsert so that the target rejects that record alone (a value its column
	// or API refuses); nil when the target takes any value, and then the cases that need it
	// must be in Skip.
	Poison func(r *sink.Record)
	// EmptyIsNull says the target cannot tell the empty text from null (CRM properties): an
	// empty text is expected back as null.
	EmptyIsNull bool
	// Skip names the cases that do not apply to the target, each with the reason. A name that
	// is not a case fails the run.
	Skip map[string]string
}

// The cases, by name (for Adapter.Skip).
const (
	CaseInsertUpdateDelete  = "InsertUpdateDelete"
	CaseIdempotentReapply   = "IdempotentReapply"
	CaseUnchangedFieldsKept = "UnchangedFieldsKept"
	CaseTruncateInOrder     = "TruncateInOrder"
	CaseOffsetsAtomic       = "OffsetsAtomic"
	CasePoisonIsolated      = "PoisonIsolated"
	CaseSoftDelete          = "SoftDelete"
	CaseUnknownField        = "UnknownField"
	CaseKeyChange           = "KeyChange"
	CaseNulls               = "Nulls"
	CaseUnicode             = "Unicode"
	CaseBigNumbers          = "BigNumbers"
)

type kitCase struct {
	name string
	run  func(k *kit)
}

var cases = []kitCase{
	{CaseInsertUpdateDelete, (*kit).insertUpdateDelete},
	{CaseIdempotentReapply, (*kit).idempotentReapply},
	{CaseUnchangedFieldsKept, (*kit).unchangedFieldsKept},
	{CaseTruncateInOrder, (*kit).truncateInOrder},
	{CaseOffsetsAtomic, (*kit).offsetsAtomic},
	{CasePoisonIsolated, (*kit).poisonIsolated},
	{CaseSoftDelete, (*kit).softDelete},
	{CaseUnknownField, (*kit).unknownField},
	{CaseKeyChange, (*kit).keyChange},
	{CaseNulls, (*kit).nulls},
	{CaseUnicode, (*kit).unicode},
	{CaseBigNumbers, (*kit).bigNumbers},
}

// Run runs every case that applies, each as a subtest on a target of its own.
func Run(t *testing.T, a Adapter) {
	t.Helper()
	known := map[string]bool{}
	for _, c := range cases {
		known[c.name] = true
	}
	for name := range a.Skip {
		if !known[name] {
			t.Fatalf("sinktest: Skip names %q, which is not a case (cases: %v)", name, slices.Sorted(maps.Keys(known)))
		}
	}
	if len(a.Fields) == 0 {
		a.Fields = AllFields
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if why, ok := a.Skip[c.name]; ok {
				t.Skipf("does not apply: %s", why)
			}
			k := &kit{t: t, a: a, want: map[string]map[string]any{}}
			c.run(k)
		})
	}
}

// kit is one case's state: the connector, its target and the rows the target should hold.
type kit struct {
	t      *testing.T
	a      Adapter
	o      Opened
	offset int64
	want   map[string]map[string]any
}

func (k *kit) open(softDelete bool) {
	k.t.Helper()
	p := sink.Params{Sink: SinkName, Key: []string{KeyField}}
	if softDelete {
		p.SoftDeleteColumn = DeletedAt
	}
	k.o = k.a.Open(k.t, p)
	if k.o.Conn == nil || k.o.Rows == nil {
		k.t.Fatal("sinktest: Open returned no connector or no Rows")
	}
}

// row is a kit row with id and its fields (nil values are nulls).
func upsert(id int64, fields map[string]any) sink.Record {
	f := map[string]any{KeyField: id}
	order := []string{KeyField}
	for _, name := range AllFields {
		if v, ok := fields[name]; ok {
			f[name] = v
			order = append(order, name)
		}
	}
	for name, v := range fields { // fields outside the kit's (the unknown-field case)
		if !slices.Contains(order, name) {
			f[name] = v
			order = append(order, name)
		}
	}
	return sink.Record{Op: sink.OpUpsert, Key: map[string]any{KeyField: id}, KeyOrder: []string{KeyField},
		Fields: f, FieldOrder: order}
}

func del(id int64) sink.Record {
	return sink.Record{Op: sink.OpDelete, Key: map[string]any{KeyField: id}, KeyOrder: []string{KeyField}}
}

func truncate() sink.Record { return sink.Record{Op: sink.OpTruncate} }

// item is a full row of the kit's shape.
func item(name string, qty int64, price string, note any) map[string]any {
	return map[string]any{Name: name, Qty: qty, Price: price, Note: note}
}

// batch numbers the records with offsets following the previous batch's.
func (k *kit) batch(recs ...sink.Record) *sink.Batch {
	b := &sink.Batch{Sink: SinkName, Topic: TopicName, Partition: 0}
	for _, r := range recs {
		if k.a.Translate != nil {
			r = k.a.Translate(r)
		}
		r.Topic, r.Partition, r.Offset = TopicName, 0, k.offset
		k.offset++
		b.Records = append(b.Records, r)
	}
	b.NextOffset = k.offset
	return b
}

func (k *kit) apply(b *sink.Batch) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return k.o.Conn.Apply(ctx, b)
}

// mustApply applies the records as one batch and records what the target should hold after.
func (k *kit) mustApply(recs ...sink.Record) {
	k.t.Helper()
	if err := k.apply(k.batch(recs...)); err != nil {
		k.t.Fatalf("apply %s: %v", describe(recs), err)
	}
	for _, r := range recs {
		k.expect(r)
	}
}

// expect updates the expected rows with what r asks of the target.
func (k *kit) expect(r sink.Record) {
	switch r.Op {
	case sink.OpTruncate:
		clear(k.want)
	case sink.OpDelete:
		delete(k.want, keyText(r.Key[KeyField]))
	case sink.OpUpsert:
		key := keyText(r.Key[KeyField])
		row := k.want[key]
		if row == nil {
			row = map[string]any{}
			k.want[key] = row
		}
		for _, name := range k.a.Fields {
			if v, ok := r.Fields[name]; ok { // absent fields keep their value
				if v == "" && k.a.EmptyIsNull {
					v = nil
				}
				row[name] = v
			}
		}
	}
}

// check compares the target with the expected rows.
func (k *kit) check(when string) {
	k.t.Helper()
	got := k.o.Rows(k.t)
	var diffs []string
	for _, key := range slices.Sorted(maps.Keys(k.want)) {
		g, ok := got[key]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("row %s missing (want %v)", key, k.want[key]))
			continue
		}
		for _, name := range k.a.Fields {
			if !sameValue(k.want[key][name], g[name]) {
				diffs = append(diffs, fmt.Sprintf("row %s field %s = %s, want %s", key, name, show(g[name]), show(k.want[key][name])))
			}
		}
	}
	for _, key := range slices.Sorted(maps.Keys(got)) {
		if _, ok := k.want[key]; !ok {
			diffs = append(diffs, fmt.Sprintf("row %s should not be there: %v", key, got[key]))
		}
	}
	if len(diffs) > 0 {
		k.t.Fatalf("%s, the target differs:\n  %s", when, strings.Join(diffs, "\n  "))
	}
}

func describe(recs []sink.Record) string {
	parts := make([]string, len(recs))
	for i, r := range recs {
		parts[i] = fmt.Sprintf("%s %v", r.Op, r.Key[KeyField])
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func keyText(v any) string { return fmt.Sprint(v) }

// sameValue compares a record's value with what the target gave back, across the forms targets
// return: nil and absent are null; numbers and decimal text compare by value, exactly; the rest
// by text.
func sameValue(want, got any) bool {
	w, g := text(want), text(got)
	if w == nil || g == nil {
		return w == nil && g == nil
	}
	if rw, ok := new(big.Rat).SetString(*w); ok && isNumber(*w) {
		if rg, ok := new(big.Rat).SetString(*g); ok && isNumber(*g) {
			return rw.Cmp(rg) == 0
		}
	}
	return *w == *g
}

// isNumber reports whether s is plain decimal text (big.Rat also takes "1/2" and exponents).
func isNumber(s string) bool {
	s = strings.TrimPrefix(s, "-")
	return s != "" && strings.Trim(s, "0123456789.") == "" && strings.Count(s, ".") <= 1
}

func text(v any) *string {
	var s string
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		s = x
	case []byte:
		s = string(x)
	case float64:
		s = strconv.FormatFloat(x, 'f', -1, 64)
	case float32:
		s = strconv.FormatFloat(float64(x), 'f', -1, 32)
	default:
		s = fmt.Sprint(x)
	}
	return &s
}

func show(v any) string {
	if s := text(v); s != nil {
		return strconv.Quote(*s)
	}
	return "null"
}

// refusal checks that err is how a connector refuses records: not nil and not retryable (a
// retryable error holds the partition for as long as it takes). It returns the indexes the error
// names as rejected, all of them for an error that fails the batch as a whole.
func (k *kit) refusal(err error, n int, what string) []int {
	k.t.Helper()
	if err == nil {
		k.t.Fatalf("%s: applied without error, want it refused", what)
	}
	if sink.IsRetryable(err) {
		k.t.Fatalf("%s: refused with a retryable error, which would hold the partition for good: %v", what, err)
	}
	var pe *sink.PartialError
	if !errors.As(err, &pe) {
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		return all
	}
	var idx []int
	for _, f := range pe.Failed {
		if f.Reason == "" {
			k.t.Errorf("%s: record %d rejected without a reason", what, f.Index)
		}
		idx = append(idx, f.Index)
	}
	sort.Ints(idx)
	return idx
}
