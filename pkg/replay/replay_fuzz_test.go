package replay

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzParseFrom checks --from: whatever it accepts names a start a replay can use (a topic, a
// partition and an offset, none negative or empty) and reads back the same from its own
// spelling.
func FuzzParseFrom(f *testing.F) {
	for _, s := range []string{
		"earliest", "2024-05-01T10:00:00Z", "2024-05-01T10:00:00.123456789+02:00",
		"wh.public.t:0:5,wh.public.t:2:7", "a:b:c:1:9", " t:0:1 , u:3:0", "t:-1:5", ":0:5", "t:0:5,t:0:7",
		"t:0:-1", "t:x:1", "", ",", "t::", "t:2147483648:0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		from, err := ParseFrom(s)
		if err != nil {
			return
		}
		var again From
		switch {
		case from.Earliest:
			return
		case from.Offsets == nil:
			if again, err = ParseFrom(from.Time.Format(time.RFC3339Nano)); err != nil || !again.Time.Equal(from.Time) {
				t.Fatalf("ParseFrom(%q) = %v; its spelling reads back as %v, %v", s, from.Time, again.Time, err)
			}
			return
		}
		var parts []string
		for topic, offs := range from.Offsets {
			for p, o := range offs {
				if topic == "" || p < 0 || o < 0 {
					t.Fatalf("ParseFrom(%q) accepted topic %q partition %d offset %d", s, topic, p, o)
				}
				parts = append(parts, fmt.Sprintf("%s:%d:%d", topic, p, o))
			}
		}
		if n := len(strings.Split(s, ",")); len(parts) != n {
			t.Fatalf("ParseFrom(%q) gave %d starts for %d parts: a partition given twice", s, len(parts), n)
		}
		slices.Sort(parts)
		if again, err = ParseFrom(strings.Join(parts, ",")); err != nil || !reflect.DeepEqual(again.Offsets, from.Offsets) {
			t.Fatalf("ParseFrom(%q) = %v; its spelling reads back as %v, %v", s, from.Offsets, again.Offsets, err)
		}
	})
}
