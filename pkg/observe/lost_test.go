package observe

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/kafka"
	"github.com/backflow-dev/backflow/pkg/testenv"
)

func lostLetter(kv ...string) *kgo.Record {
	r := &kgo.Record{Timestamp: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	for i := 0; i+1 < len(kv); i += 2 {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return r
}

// TestLostRangeOf: only a dead letter with a well-formed range is a lost range; its time is the
// header's, or the record's without one.
func TestLostRangeOf(t *testing.T) {
	at := "2026-12-06T10:00:00Z"
	full := []string{kafka.DLQHeaderTopic, "wh.public.t", kafka.DLQHeaderPartition, "2", kafka.DLQHeaderOffset, "10",
		kafka.DLQHeaderLostTo, "15", kafka.DLQHeaderTime, at}
	for _, tc := range []struct {
		name string
		rec  *kgo.Record
		want LostRange
		ok   bool
	}{
		{"a lost range", lostLetter(full...), LostRange{Topic: "wh.public.t", Partition: 2, From: 10, To: 15, At: time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)}, true},
		{"no time header", lostLetter(full[:8]...), LostRange{Topic: "wh.public.t", Partition: 2, From: 10, To: 15, At: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}, true},
		{"a dead letter of a record", lostLetter(full[:6]...), LostRange{}, false},
		{"an empty range", lostLetter(kafka.DLQHeaderPartition, "2", kafka.DLQHeaderOffset, "15", kafka.DLQHeaderLostTo, "15"), LostRange{}, false},
		{"a bad offset", lostLetter(kafka.DLQHeaderPartition, "2", kafka.DLQHeaderOffset, "x", kafka.DLQHeaderLostTo, "15"), LostRange{}, false},
		{"a bad partition", lostLetter(kafka.DLQHeaderPartition, "99999999999", kafka.DLQHeaderOffset, "1", kafka.DLQHeaderLostTo, "15"), LostRange{}, false},
		{"a negative offset", lostLetter(kafka.DLQHeaderPartition, "0", kafka.DLQHeaderOffset, "-3", kafka.DLQHeaderLostTo, "15"), LostRange{}, false},
	} {
		got, ok := LostRangeOf(tc.rec)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: LostRangeOf = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// TestMergeLost: a range found again (the same partition and first offset) is kept once.
func TestMergeLost(t *testing.T) {
	a := LostRange{Topic: "t", Partition: 0, From: 1, To: 5}
	b := LostRange{Topic: "t", Partition: 1, From: 1, To: 5}
	got := mergeLost([]LostRange{a}, []LostRange{{Topic: "t", Partition: 0, From: 1, To: 7}, b})
	if len(got) != 2 || got[0] != a || got[1] != b {
		t.Errorf("mergeLost = %+v", got)
	}
	var many []LostRange
	for i := range maxLostRanges + 5 {
		many = append(many, LostRange{Topic: "t", From: int64(i), To: int64(i + 1)})
	}
	if got := mergeLost(nil, many); len(got) != maxLostRanges || got[0].From != 5 {
		t.Errorf("mergeLost of %d ranges kept %d from %d; want the newest %d", len(many), len(got), got[0].From, maxLostRanges)
	}
}

// FuzzLostRangeOf: any headers parse without panic, and a range read is never empty.
func FuzzLostRangeOf(f *testing.F) {
	f.Add("wh.public.t", "2", "10", "15", "2026-12-06T10:00:00Z")
	f.Add("", "-1", "-5", "0", "")
	f.Fuzz(func(t *testing.T, topic, part, from, to, at string) {
		r, ok := LostRangeOf(lostLetter(kafka.DLQHeaderTopic, topic, kafka.DLQHeaderPartition, part,
			kafka.DLQHeaderOffset, from, kafka.DLQHeaderLostTo, to, kafka.DLQHeaderTime, at))
		if ok && (r.From < 0 || r.From >= r.To || r.Partition < 0 || r.Topic != topic || r.String() == "") {
			t.Errorf("LostRangeOf gave %+v", r)
		}
	})
}

// TestLostScansReadOnlyChangedTopics: the lost ranges of a dead-letter topic are read again only
// once its offsets moved; a status collected again meanwhile reuses them.
func TestLostScansReadOnlyChangedTopics(t *testing.T) {
	ctx := context.Background()
	kf := testenv.NewKafka(t)
	kopts := []kgo.Opt{kgo.SeedBrokers(kf.Brokers()...)}
	cl, err := kgo.NewClient(append(kopts, kgo.DefaultProduceTopic("s1.dlq"), kgo.AllowAutoTopicCreation())...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "s1.dlq"); err != nil {
		t.Fatal(err)
	}
	write := func(from, to string) {
		t.Helper()
		if err := cl.ProduceSync(ctx, lostLetter(kafka.DLQHeaderTopic, "wh.public.t", kafka.DLQHeaderPartition, "0",
			kafka.DLQHeaderOffset, from, kafka.DLQHeaderLostTo, to)).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: []byte("a dead letter")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	total := func(l []LostRange) (n int64) {
		for _, r := range l {
			n += r.To - r.From
		}
		return n
	}
	scans := NewLostScans()
	nowhere := []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1"), kgo.RetryTimeout(time.Second)} // reading through it fails
	write("10", "15")
	starts, ends, err := bounds(ctx, adm, "s1.dlq")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := scans.read(ctx, kopts, "s1.dlq", starts, ends); err != nil || total(got) != 5 {
		t.Fatalf("first read: %+v, %v; want the 5 records of the one range", got, err)
	}
	if got, err := scans.read(ctx, nowhere, "s1.dlq", starts, ends); err != nil || total(got) != 5 {
		t.Fatalf("read of an unchanged topic: %+v, %v; want the range read before, without reading", got, err)
	}
	write("20", "22")
	if starts, ends, err = bounds(ctx, adm, "s1.dlq"); err != nil {
		t.Fatal(err)
	}
	if _, err := scans.read(ctx, nowhere, "s1.dlq", starts, ends); err == nil {
		t.Fatalf("a topic that grew was not read again")
	}
	if got, err := scans.read(ctx, kopts, "s1.dlq", starts, ends); err != nil || total(got) != 7 {
		t.Fatalf("read of the grown topic: %+v, %v; want both ranges, 7 records", got, err)
	}
	var none *LostScans // remembers nothing, still reads
	if got, err := none.read(ctx, kopts, "s1.dlq", starts, ends); err != nil || total(got) != 7 {
		t.Fatalf("read without LostScans: %+v, %v", got, err)
	}
}
