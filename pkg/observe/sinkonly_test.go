package observe

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/config"
)

// TestSinkOnlyStatus: a pipeline without a source is judged by its sinks alone, and its sinks
// are named with the sink prefix.
func TestSinkOnlyStatus(t *testing.T) {
	cases := []struct {
		name     string
		sinkOnly bool
		problems int
	}{
		{"with a source, a missing slot is a problem", false, 1},
		{"sink-only, no slot to miss", true, 0},
	}
	for _, tc := range cases {
		st := &Status{SinkOnly: tc.sinkOnly, Capture: CaptureStatus{Slot: "backflow"}}
		st.Evaluate(DefaultThresholds())
		if len(st.Problems) != tc.problems || st.Healthy != (tc.problems == 0) {
			t.Errorf("%s: problems %v", tc.name, st.Problems)
		}
	}
	cfg := &config.Pipeline{Kafka: config.Kafka{SinkPrefix: "envA.", Brokers: []string{"127.0.0.1:1"}},
		Sinks: []config.Sink{{Name: "s", Topics: []string{"t"}}}}
	st, err := Collect(context.Background(), cfg, []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, nil, WithTimeout(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if !st.SinkOnly || st.Capture.Slot != "" || strings.Contains(strings.Join(st.Problems, " "), "slot") {
		t.Errorf("sink-only status = %+v", st)
	}
}
