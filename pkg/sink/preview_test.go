package sink_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/sink"
)

// TestReaderFindsSchemasOfAnotherPrefix: records written with the schemas of prefix "wh" (in
// wh._schemas) decode for a reader of another pipeline only when its schema topics name
// wh._schemas; a listed schema topic that does not exist is no error.
func TestReaderFindsSchemasOfAnotherPrefix(t *testing.T) {
	h := newHarness(t)
	h.produce(upsert(1, 10, "a"))
	recs := consume(t, h, "wh.public.t", 1)
	cases := []struct {
		name   string
		topics []string
		ok     bool
	}{
		{"own prefix only", nil, false},
		{"other prefix listed", []string{"mine._schemas", "wh._schemas"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rd, err := sink.NewReader(config.Kafka{Brokers: h.kf.Brokers(), TopicPrefix: "mine"}, tc.topics)
			if err != nil {
				t.Fatal(err)
			}
			ev, err := rd.Decode(context.Background(), recs[0])
			if tc.ok != (err == nil) {
				t.Fatalf("Decode: %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && ev.After["note"] != "a" {
				t.Errorf("after = %v", ev.After)
			}
		})
	}
}

// TestPreviewMaps: a Preview maps events as the sink would and says why it skips one.
func TestPreviewMaps(t *testing.T) {
	p := &config.Pipeline{Kafka: config.Kafka{TopicPrefix: "wh"}}
	sc := config.Sink{Name: "s", Topics: []string{"wh.public.t"}, Key: []string{"id"}, OnDelete: config.OnDeleteIgnore,
		OnTruncate: config.OnTruncateTruncate, Map: map[string]string{"id": "after.id", "v": "after.v * 2"}, Filter: "after.v > 0"}
	pv, err := sink.NewPreview(p, sc)
	if err != nil {
		t.Fatal(err)
	}
	tbl := &change.Table{Schema: "public", Name: "t", Columns: []change.Column{{Name: "id", Kind: change.KindInt32, Key: true}, {Name: "v", Kind: change.KindInt32}}}
	cases := []struct {
		name string
		ev   *change.Event
		want string
	}{
		{"upsert", &change.Event{Op: change.OpCreate, After: change.Row{"id": int32(1), "v": int32(2)}}, "upsert map[id:1] map[id:1 v:4]"},
		{"filtered", &change.Event{Op: change.OpUpdate, After: change.Row{"id": int32(1), "v": int32(0)}}, "skip filter"},
		{"delete ignored", &change.Event{Op: change.OpDelete, Before: change.Row{"id": int32(1)}}, "skip on_delete: ignore"},
		{"truncate", &change.Event{Op: change.OpTruncate}, "truncate map[] map[]"},
		{"missing column", &change.Event{Op: change.OpCreate, After: change.Row{"id": int32(1)}}, "error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.ev.Table = tbl
			r, skip, err := pv.Map(tc.ev, "wh.public.t", 0, 0)
			got := fmt.Sprintf("%s %v %v", r.Op, r.Key, r.Fields)
			switch {
			case err != nil:
				got = "error"
			case skip != "":
				got = "skip " + skip
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func consume(t *testing.T, h *harness, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.kf.Brokers()...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(context.Background())
		out = append(out, fs.Records()...)
	}
	return out
}
