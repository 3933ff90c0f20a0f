package replay

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/sink"
)

func TestParseFrom(t *testing.T) {
	cases := []struct {
		in      string
		ok      bool
		check   func(From) bool
		comment string
	}{
		{"earliest", true, func(f From) bool { return f.Earliest }, "earliest"},
		{"2024-05-01T10:00:00Z", true, func(f From) bool { return f.Time.Equal(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)) }, "time"},
		{"wh.public.t:0:5,wh.public.t:2:7", true, func(f From) bool { return f.Offsets["wh.public.t"][0] == 5 && f.Offsets["wh.public.t"][2] == 7 }, "offsets"},
		{"a:b:c:1:9", true, func(f From) bool { return f.Offsets["a:b:c"][1] == 9 }, "topic with colons"},
		{"yesterday", false, nil, "garbage"},
		{"t:0:-1", false, nil, "negative offset"},
		{"t:x:1", false, nil, "bad partition"},
	}
	for _, tc := range cases {
		f, err := ParseFrom(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%s: ParseFrom(%q) error %v, want ok=%v", tc.comment, tc.in, err, tc.ok)
			continue
		}
		if tc.ok && !tc.check(f) {
			t.Errorf("%s: ParseFrom(%q) = %+v", tc.comment, tc.in, f)
		}
	}
}

func TestGroupNameIsStablePerStart(t *testing.T) {
	a, _ := ParseFrom("earliest")
	again, _ := ParseFrom("earliest")
	b, _ := ParseFrom("2024-05-01T10:00:00Z")
	if GroupName("s", a) != GroupName("s", again) || GroupName("s", a) == GroupName("s", b) {
		t.Errorf("group names: %s %s", GroupName("s", a), GroupName("s", b))
	}
}

func TestEndMetadataRoundTrip(t *testing.T) {
	if n, ok := parseEnd(endMeta(1234)); !ok || n != 1234 {
		t.Errorf("parseEnd(endMeta(1234)) = %d, %v", n, ok)
	}
	if _, ok := parseEnd("something else"); ok {
		t.Error("foreign metadata parsed as an end")
	}
}

func TestWithinAndByOrigin(t *testing.T) {
	recs := []*kgo.Record{{Offset: 3}, {Offset: 4}, {Offset: 5}}
	if got := within(recs, 5); len(got) != 2 {
		t.Errorf("within(…, 5) kept %d records, want 2", len(got))
	}
	dl := func(topic, p, off string) *kgo.Record {
		return &kgo.Record{Headers: []kgo.RecordHeader{{Key: sink.HeaderTopic, Value: []byte(topic)},
			{Key: sink.HeaderPartition, Value: []byte(p)}, {Key: sink.HeaderOffset, Value: []byte(off)}}}
	}
	runs := byOrigin([]*kgo.Record{dl("a", "0", "1"), dl("a", "0", "9"), dl("a", "1", "2"), dl("a", "0", "12")})
	if len(runs) != 3 || len(runs[0]) != 2 || runs[0][1].Offset != 9 || runs[1][0].Partition != 1 {
		t.Errorf("byOrigin grouped %v", runs)
	}
}
