package model

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/backflow-dev/backflow/pkg/config"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// Statuses reads the last committed run and the last attempt of every model of cfg from the
// capture state topic, through kopts.
func Statuses(ctx context.Context, cfg *config.Pipeline, kopts []kgo.Opt) ([]observe.ModelStatus, error) {
	if len(cfg.Models) == 0 {
		return nil, nil
	}
	commits, attempts, err := readRecords(ctx, kopts, cfg.Kafka.CaptureStateTopic())
	if err != nil {
		return nil, err
	}
	out := make([]observe.ModelStatus, 0, len(cfg.Models))
	for _, m := range cfg.Models {
		ms := observe.ModelStatus{Name: m.Name, Topic: cfg.ModelTopic(m)}
		if c, ok := commits[m.Name]; ok {
			ms.Run, ms.Rows = c.Run, c.Rows
			if !c.Committed {
				ms.Run-- // the run marked is still publishing, or stopped while it did
			}
			if c.Committed {
				at := c.At
				ms.CommittedAt = &at
			}
		}
		if a, ok := attempts[m.Name]; ok {
			at := a.At
			ms.LastAttempt, ms.LastChanges, ms.Error = &at, a.Changes, a.Error
		}
		out = append(out, ms)
	}
	return out, nil
}
