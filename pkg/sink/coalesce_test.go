package sink

import (
	"fmt"
	"reflect"
	"testing"
	"time"
)

func rec(op Op, id int, fields map[string]any, off int64) Record {
	return Record{Op: op, Key: map[string]any{"id": id}, KeyOrder: []string{"id"}, Fields: fields, Offset: off}
}

func TestCoalesce(t *testing.T) {
	cases := []struct {
		name string
		in   []Record
		want []string // op:id:fields:offset
	}{
		{"last state wins", []Record{
			rec(OpUpsert, 1, map[string]any{"v": 1}, 0), rec(OpUpsert, 2, map[string]any{"v": 1}, 1), rec(OpUpsert, 1, map[string]any{"v": 2}, 2),
		}, []string{"upsert:1:map[v:2]:2", "upsert:2:map[v:1]:1"}},
		{"a delete stays a delete", []Record{
			rec(OpUpsert, 1, map[string]any{"v": 1}, 0), rec(OpDelete, 1, nil, 1),
		}, []string{"delete:1:map[]:1"}},
		{"insert after delete", []Record{
			rec(OpDelete, 1, nil, 0), rec(OpUpsert, 1, map[string]any{"v": 3}, 1),
		}, []string{"upsert:1:map[v:3]:1"}},
		{"unchanged toast inherited", []Record{
			rec(OpUpsert, 1, map[string]any{"v": 1, "body": "big"}, 0), rec(OpUpsert, 1, map[string]any{"v": 2}, 1),
		}, []string{"upsert:1:map[body:big v:2]:1"}},
		{"nothing coalesced across a truncate", []Record{
			rec(OpUpsert, 1, map[string]any{"v": 1}, 0), {Op: OpTruncate, Offset: 1}, rec(OpUpsert, 1, map[string]any{"v": 2}, 2),
		}, []string{"upsert:1:map[v:1]:0", "truncate:<nil>:map[]:1", "upsert:1:map[v:2]:2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, r := range coalesce(tc.in) {
				got = append(got, fmt.Sprintf("%s:%v:%v:%d", r.Op, r.Key["id"], fmtFields(r.Fields), r.Offset))
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("coalesce = %v, want %v", got, tc.want)
			}
		})
	}
}

func fmtFields(f map[string]any) string {
	if f == nil {
		return "map[]"
	}
	return fmt.Sprint(f)
}

// TestCoalesceKeys: records are the same key when every key field is equal, whatever the key's
// types, and a batch without repeated keys comes back as it is.
func TestCoalesceKeys(t *testing.T) {
	keyed := func(off int64, kv ...any) Record {
		r := Record{Op: OpUpsert, Key: map[string]any{}, Offset: off}
		for i := 0; i < len(kv); i += 2 {
			name := kv[i].(string)
			r.Key[name] = kv[i+1]
			r.KeyOrder = append(r.KeyOrder, name)
		}
		return r
	}
	ts := time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		in   []Record
		want []int64 // offsets left
	}{
		{"composite", []Record{keyed(0, "a", "x", "b", int32(1)), keyed(1, "a", "x", "b", int32(2)), keyed(2, "a", "x", "b", int32(1))}, []int64{2, 1}},
		{"int and bigint", []Record{keyed(0, "id", int32(7)), keyed(1, "id", int64(7)), keyed(2, "id", 7)}, []int64{2}},
		{"string is not a number", []Record{keyed(0, "id", "7"), keyed(1, "id", int64(7))}, []int64{0, 1}},
		{"booleans", []Record{keyed(0, "k", true), keyed(1, "k", false), keyed(2, "k", true)}, []int64{2, 1}},
		{"other types", []Record{keyed(0, "at", ts), keyed(1, "at", ts.Add(time.Second)), keyed(2, "at", ts)}, []int64{2, 1}},
		{"five fields", []Record{keyed(0, "a", 1, "b", 2, "c", 3, "d", 4, "e", 5), keyed(1, "a", 1, "b", 2, "c", 3, "d", 4, "e", 6),
			keyed(2, "a", 1, "b", 2, "c", 3, "d", 4, "e", 5)}, []int64{2, 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got []int64
			for _, r := range coalesce(tc.in) {
				got = append(got, r.Offset)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("coalesce kept offsets %v, want %v", got, tc.want)
			}
		})
	}
	distinct := []Record{keyed(0, "id", 1), keyed(1, "id", 2), {Op: OpTruncate, Offset: 2}, keyed(3, "id", 1)}
	if out := coalesce(distinct); &out[0] != &distinct[0] || len(out) != len(distinct) {
		t.Errorf("a batch without repeated keys was copied")
	}
}

func TestResumeOffset(t *testing.T) {
	pending := []*Batch{{Records: []Record{{Offset: 9}, {Offset: 4}}}, {Records: []Record{{Offset: 7}}}}
	if got := resumeOffset(pending, 12); got != 4 {
		t.Errorf("resumeOffset = %d, want 4 (the lowest offset still to apply)", got)
	}
	if got := resumeOffset(nil, 12); got != 12 {
		t.Errorf("resumeOffset with nothing pending = %d, want the batch's next offset 12", got)
	}
}
