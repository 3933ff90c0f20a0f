package model

import (
	"context"
	"maps"
	"strings"
	"testing"
)

// TestKafkaLostRecordsAreRebuilt: Kafka loses a run's records after acknowledging them (it
// hands their offsets out again: an unclean leader election, a truncated log). The run fails,
// naming the topic, and is not committed; the next one rebuilds the state from the topic and
// writes again what it lacks, so that the topic ends as the model's result. Without the watch,
// the run was committed and the topic kept missing the change.
func TestKafkaLostRecordsAreRebuilt(t *testing.T) {
	e := newEnv(t, leadModel())
	seedEvents(e)
	r := e.runner()
	topic := e.cfg.ModelTopic(e.cfg.Models[0])
	e.mustRun(r, "lead_scores")

	lost, err := e.kf.LoseNextProduce(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	e.exec(`INSERT INTO public.events (email, points) VALUES ('new@x', 5)`)
	_, err = r.Run(context.Background(), "lead_scores")
	if !lost.Load() {
		t.Fatal("the run's records did not reach the broker alone")
	}
	if err == nil || !strings.Contains(err.Error(), "Kafka lost records of "+topic) {
		t.Fatalf("the run whose records Kafka lost ended with %v, want an error naming %s", err, topic)
	}
	res := e.mustRun(r, "lead_scores")
	if !res.Rebuilt {
		t.Fatalf("the run after the loss did not rebuild its state: %+v", res)
	}
	if got, want := materialize(e.events(topic)), e.want(leadScores); !maps.Equal(got, want) {
		t.Fatalf("topic as a sink sees it:\n%v\nwant\n%v", got, want)
	}
}
