package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// FuzzTruncateCopyOf: any headers a record carries (another tool's, a damaged copy's) read as a
// truncate copy only with an id and a positive partition count, and never panic.
func FuzzTruncateCopyOf(f *testing.F) {
	f.Add("0/16B3748", "6")
	f.Add("", "0")
	f.Add("x", "-3")
	f.Add("x", "99999999999")
	f.Fuzz(func(t *testing.T, id, n string) {
		r := &kgo.Record{Headers: []kgo.RecordHeader{{Key: HeaderTruncate, Value: []byte(id)}, {Key: HeaderTruncatePartitions, Value: []byte(n)}}}
		c, ok := TruncateCopyOf(r)
		if ok && (c.Partitions <= 0 || c.ID != id) {
			t.Fatalf("%q, %q read as copy %+v", id, n, c)
		}
	})
}
