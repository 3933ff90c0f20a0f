package sink

import (
	"fmt"
	"reflect"
	"testing"
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

func TestResumeOffset(t *testing.T) {
	pending := []*Batch{{Records: []Record{{Offset: 9}, {Offset: 4}}}, {Records: []Record{{Offset: 7}}}}
	if got := resumeOffset(pending, 12); got != 4 {
		t.Errorf("resumeOffset = %d, want 4 (the lowest offset still to apply)", got)
	}
	if got := resumeOffset(nil, 12); got != 12 {
		t.Errorf("resumeOffset with nothing pending = %d, want the batch's next offset 12", got)
	}
}
