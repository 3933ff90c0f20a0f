package capture

import (
	"runtime"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
)

// TestParseWALRefusesCountsPastTheMessage: a message whose counts or lengths reach past its end
// is refused before pglogrepl allocates what they say. A truncate of "T0St…" counts 810 million
// relations: pglogrepl would allocate 3.2 GB for their ids first (FuzzTuple's workers died of
// it). A well-formed truncate still parses.
func TestParseWALRefusesCountsPastTheMessage(t *testing.T) {
	for _, tc := range []struct {
		name, data, err string
	}{
		{"truncate", "T0St\x00\x00\x00\x05happy", "810775552 relations in 7 bytes"},
		{"truncate one id short", "T\x00\x00\x00\x02\x00\x00\x00\x40\x01", "2 relations in 4 bytes"},
		{"insert column", "I\x00\x00\x40\x01N\x00\x01t\x7f\xff\xff\xffab", "a column of 2147483647 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := parseWAL([]byte(tc.data))
			runtime.ReadMemStats(&after)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want it to say %q", err, tc.err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
				t.Errorf("parsing allocated %d bytes", grew)
			}
		})
	}
	msg, err := parseWAL([]byte("T\x00\x00\x00\x02\x00\x00\x00\x40\x01\x00\x00\x40\x02"))
	if tr, ok := msg.(*pglogrepl.TruncateMessage); err != nil || !ok || len(tr.RelationIDs) != 2 || tr.RelationIDs[1] != 0x4002 {
		t.Fatalf("a truncate of two relations parsed as %#v, %v", msg, err)
	}
}
