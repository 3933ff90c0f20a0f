package model

import (
	"maps"
	"testing"
)

// TestFormats: a model's events decode in every format capture writes, as captured tables'
// do, so sinks read them unchanged.
func TestFormats(t *testing.T) {
	for _, format := range []string{"json", "debezium-json", "avro-confluent"} {
		t.Run(format, func(t *testing.T) {
			e := newEnv(t, leadModel())
			e.cfg.Kafka.Format = format
			seedEvents(e)
			r := e.runner()
			e.mustRun(r, "lead_scores")
			e.exec(`DELETE FROM public.events WHERE email = 'c@x'`)
			e.mustRun(r, "lead_scores")
			evs := e.events(e.cfg.ModelTopic(e.cfg.Models[0]))
			if got, want := materialize(evs), e.want(leadScores); !maps.Equal(got, want) {
				t.Fatalf("topic as a sink sees it:\n%v\nwant\n%v", got, want)
			}
		})
	}
}
