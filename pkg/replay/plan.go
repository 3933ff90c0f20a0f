// Package replay re-applies history from the change topics into a sink: offset resets of the
// sink's own group, bounded backfills in a group of their own beside the live sink, and
// re-drives of a sink's dead-letter topic.
package replay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// Range is the part of one partition a replay covers: [Start, End).
type Range struct {
	Topic     string
	Partition int32
	Start     int64
	End       int64
}

// Count is the number of offsets in the range (records, tombstones included).
func (r Range) Count() int64 { return max(0, r.End-r.Start) }

// Plan is what a replay will do, partition by partition.
type Plan struct {
	Group  string // the consumer group whose offsets record the replay's progress
	Ranges []Range
	Resume bool // progress of an interrupted run with the same arguments was found
}

// Total is the number of offsets the plan covers.
func (p *Plan) Total() int64 {
	var n int64
	for _, r := range p.Ranges {
		n += r.Count()
	}
	return n
}

// From is a parsed --from: "earliest", an RFC 3339 time, or explicit topic:partition:offset list.
type From struct {
	Earliest bool
	Time     time.Time
	Offsets  map[string]map[int32]int64
	raw      string
}

// ParseFrom parses the --from argument.
func ParseFrom(s string) (From, error) {
	f := From{raw: s}
	if s == "earliest" {
		f.Earliest = true
		return f, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		f.Time = t
		return f, nil
	}
	f.Offsets = map[string]map[int32]int64{}
	for _, part := range strings.Split(s, ",") {
		if err := f.addOffset(strings.TrimSpace(part)); err != nil {
			return From{}, fmt.Errorf("--from %q: %w; expected earliest, an RFC 3339 time or topic:partition:offset,…", s, err)
		}
	}
	return f, nil
}

func (f *From) addOffset(part string) error {
	i := strings.LastIndex(part, ":")
	j := strings.LastIndex(part[:max(i, 0)], ":")
	if i < 0 || j < 0 {
		return fmt.Errorf("%q is not topic:partition:offset", part)
	}
	topic := part[:j]
	if topic == "" {
		return fmt.Errorf("%q: no topic", part)
	}
	p, err := strconv.ParseInt(part[j+1:i], 10, 32)
	if err != nil || p < 0 {
		return fmt.Errorf("%q: partition must be a non-negative integer", part)
	}
	o, err := strconv.ParseInt(part[i+1:], 10, 64)
	if err != nil || o < 0 {
		return fmt.Errorf("%q: offset must be a non-negative integer", part)
	}
	if f.Offsets[topic] == nil {
		f.Offsets[topic] = map[int32]int64{}
	}
	if _, dup := f.Offsets[topic][int32(p)]; dup {
		return fmt.Errorf("%q: partition %d of %s is given twice", part, p, topic)
	}
	f.Offsets[topic][int32(p)] = o
	return nil
}

// GroupName is the consumer group of a bounded backfill: derived from the sink and the start, so
// the same command resumes the same replay.
func GroupName(sink string, from From) string {
	h := sha256.Sum256([]byte(from.raw))
	return sink + ".replay-" + hex.EncodeToString(h[:4])
}

// Resolve computes the start and end offset of every partition of topics. End offsets are the
// last stable offsets now (the high watermarks, but for transactions still open); starts come
// from from. Partitions not named by an explicit offset list are not replayed.
func Resolve(ctx context.Context, adm *kadm.Client, topics []string, from From) ([]Range, error) {
	ends, err := adm.ListCommittedOffsets(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	if err := ends.Error(); err != nil {
		return nil, fmt.Errorf("list end offsets: %w", err)
	}
	starts, err := startOffsets(ctx, adm, topics, from)
	if err != nil {
		return nil, err
	}
	var out []Range
	ends.Each(func(o kadm.ListedOffset) {
		start, ok := starts[o.Topic][o.Partition]
		if !ok {
			start = o.Offset
		}
		out = append(out, Range{Topic: o.Topic, Partition: o.Partition, Start: min(start, o.Offset), End: o.Offset})
	})
	sortRanges(out)
	return out, nil
}

func startOffsets(ctx context.Context, adm *kadm.Client, topics []string, from From) (map[string]map[int32]int64, error) {
	if from.Offsets != nil {
		return from.Offsets, nil
	}
	var listed kadm.ListedOffsets
	var err error
	if from.Earliest {
		listed, err = adm.ListStartOffsets(ctx, topics...)
	} else {
		// The first offset whose timestamp is at or after the time; partitions with nothing
		// after it answer their end offset.
		listed, err = adm.ListOffsetsAfterMilli(ctx, from.Time.UnixMilli(), topics...)
	}
	if err == nil {
		err = listed.Error() // a partition left out would not be replayed, and nothing would say so
	}
	if err != nil {
		return nil, fmt.Errorf("resolve start offsets: %w", err)
	}
	out := map[string]map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) {
		if out[o.Topic] == nil {
			out[o.Topic] = map[int32]int64{}
		}
		out[o.Topic][o.Partition] = o.Offset
	})
	return out, nil
}

func sortRanges(rs []Range) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Topic != rs[j].Topic {
			return rs[i].Topic < rs[j].Topic
		}
		return rs[i].Partition < rs[j].Partition
	})
}

// DryRun describes a plan for people: one line per partition, then the total.
func DryRun(p *Plan) string {
	out := fmt.Sprintf("replay group %s", p.Group)
	if p.Resume {
		out += " (resuming an interrupted run)"
	}
	out += "\n"
	for _, r := range p.Ranges {
		out += fmt.Sprintf("  %s/%d  start %d  end %d  records %d\n", r.Topic, r.Partition, r.Start, r.End, r.Count())
	}
	return out + fmt.Sprintf("total %d records\n", p.Total())
}
