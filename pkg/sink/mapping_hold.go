package sink

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/backflow-dev/backflow/pkg/change"
	"github.com/backflow-dev/backflow/pkg/mapping"
	"github.com/backflow-dev/backflow/pkg/observe"
)

// holdMapping maps an event. When the event lacks a column the mapping or the filter reads (renamed
// or dropped at the source), the partition holds at the record, visibly (an Error log naming the
// field and the column, backflow_sink_mapping_errors_total, a problem in status), and the
// mapping is tried again under the sink's retry policy: nothing is written as NULL, and nothing
// moves on silently. Once the policy gives up the error is returned, and the record goes to the
// dead-letter topic.
func (s *Sink) holdMapping(ctx context.Context, kr *kgo.Record, ev *change.Event) (map[string]any, bool, error) {
	fields, keep, err := s.mapping.Apply(ev)
	var missing *mapping.MissingColumnError
	if !errors.As(err, &missing) {
		return fields, keep, err
	}
	maxAttempts, maxElapsed := s.retryPolicy()
	hold := observe.MappingHold{Topic: kr.Topic, Partition: kr.Partition, Offset: kr.Offset, Field: missing.Path,
		Column: missing.Column, Error: missing.Error(), Since: time.Now()}
	defer s.waits.begin(kr.Topic, kr.Partition, "")() // held on purpose: not a stall
	defer s.metrics.MappingReleased(s.cfg.Name, hold)
	bo := transientBackOff()
	for attempt := 1; ; attempt++ {
		s.metrics.MappingError(s.cfg.Name, missing.Path, missing.Column)
		left := maxElapsed - time.Since(hold.Since)
		if attempt >= maxAttempts || left <= 0 {
			s.logHold(zapcore.ErrorLevel, "record lacks a column the mapping reads; dead-lettering it", hold, attempt, maxAttempts, 0)
			if attempt == 1 {
				return nil, false, missing
			}
			return nil, false, fmt.Errorf("%w (tried %d times in %s)", missing, attempt, time.Since(hold.Since).Round(time.Millisecond))
		}
		s.metrics.MappingHeld(s.cfg.Name, hold)
		d := min(bo.NextBackOff(), left)
		level := zapcore.WarnLevel
		if attempt == 1 { // the first time says it loudest; the tries after it are counted
			level = zapcore.ErrorLevel
		}
		s.logHold(level, "record lacks a column the mapping reads; holding its partition and trying again", hold, attempt, maxAttempts, d)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		fields, keep, err = s.mapping.Apply(ev)
		if !errors.As(err, &missing) {
			return fields, keep, err
		}
	}
}

func (s *Sink) logHold(level zapcore.Level, msg string, h observe.MappingHold, attempt, maxAttempts int, in time.Duration) {
	s.log.Log(level, msg, zap.String("field", h.Field), zap.String("column", h.Column),
		zap.String("topic", h.Topic), zap.Int32("partition", h.Partition), zap.Int64("offset", h.Offset),
		zap.Int("attempt", attempt), zap.Int("max_attempts", maxAttempts), zap.Duration("in", in), zap.String("error", h.Error))
}
