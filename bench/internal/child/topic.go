package child

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TopicRecords is how many records topic holds (the sum of its partitions' end offsets); an
// error while it does not exist yet.
func TopicRecords(ctx context.Context, adm *kadm.Client, topic string) (int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			n += o.Offset
		}
	})
	return n, nil
}

// PollOpts are the options of a client that polls a topic's end offsets: franz-go maps
// partitions to leaders from metadata it caches for 5 s by default, and a topic missing at the
// first poll would read as empty until that cache expired, which showed as 5-second steps in
// the timings.
func PollOpts() []kgo.Opt {
	return []kgo.Opt{kgo.MetadataMinAge(10 * time.Millisecond)}
}

// WaitRecords polls topic's end offsets every interval until they add up to want records,
// failing when ctx ends or p exits first. Each poll has a short deadline: the client waits for a
// topic that does not exist yet, which would blur the timing.
func WaitRecords(ctx context.Context, p *Proc, adm *kadm.Client, topic string, want int64, every time.Duration) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	lastReport := time.Now()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d records on %s: %w", want, topic, ctx.Err())
		case <-p.Exited():
			return fmt.Errorf("%s exited early (%v); log tail:\n%s", p.Name, p.Err(), p.LogTail())
		case <-tick.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		n, err := TopicRecords(pctx, adm, topic)
		cancel()
		if err != nil {
			continue // not there yet
		}
		if n >= want {
			return nil
		}
		if time.Since(lastReport) >= 5*time.Second {
			Progress("%d of %d records on %s after %s", n, want, topic, time.Since(p.Started).Round(time.Second))
			lastReport = time.Now()
		}
	}
}
