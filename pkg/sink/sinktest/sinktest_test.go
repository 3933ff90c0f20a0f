package sinktest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/backflow-dev/backflow/pkg/sink"
)

// memTarget is an in-memory SQL-like target: a batch applies in one transaction with its offset,
// and a record whose name is poisonName fails the whole batch. fault makes it break one rule.
type memTarget struct {
	mu     sync.Mutex
	fault  string
	rows   map[string]map[string]any
	offset map[string]int64 // by sink and partition
}

const poisonName = "poison"

func (m *memTarget) Apply(_ context.Context, b *sink.Batch) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rows := map[string]map[string]any{}
	for k, r := range m.rows {
		rows[k] = maps.Clone(r)
	}
	for _, r := range b.Records {
		if r.Fields[Name] == poisonName {
			if m.fault == "retryable-poison" {
				return sink.Retryable(errors.New("poison"))
			}
			if m.fault == "offset-not-atomic" {
				m.offset[fmt.Sprint(b.Sink, "/", b.Partition)] = b.NextOffset
			}
			return fmt.Errorf("record %v: name refused", r.Key)
		}
		m.applyOne(rows, r)
	}
	m.rows = rows
	m.offset[fmt.Sprint(b.Sink, "/", b.Partition)] = b.NextOffset
	return nil
}

func (m *memTarget) applyOne(rows map[string]map[string]any, r sink.Record) {
	key := fmt.Sprint(r.Key[KeyField])
	switch r.Op {
	case sink.OpTruncate:
		if m.fault != "truncate-ignored" {
			clear(rows)
		}
	case sink.OpDelete:
		delete(rows, key)
	case sink.OpUpsert:
		if rows[key] == nil || m.fault == "absent-as-null" {
			rows[key] = map[string]any{}
		}
		for f, v := range r.Fields {
			if x, ok := v.(int64); ok && m.fault == "float-numbers" {
				v = float64(x)
			}
			rows[key][f] = v
		}
	}
}

func (m *memTarget) Offsets(_ context.Context, sinkName string, _ []string) (map[string]map[int32]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]map[int32]int64{}
	if off, ok := m.offset[sinkName+"/0"]; ok {
		out[TopicName] = map[int32]int64{0: off}
	}
	return out, nil
}

func (m *memTarget) Close() error { return nil }

func (m *memTarget) snapshot(testing.TB) map[string]map[string]any {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]map[string]any{}
	for k, r := range m.rows {
		out[k] = maps.Clone(r)
	}
	return out
}

func memAdapter(fault string) Adapter {
	return Adapter{
		Open: func(*testing.T, sink.Params) Opened {
			m := &memTarget{fault: fault, rows: map[string]map[string]any{}, offset: map[string]int64{}}
			return Opened{Conn: m, Rows: m.snapshot}
		},
		Poison: func(r *sink.Record) { r.Fields[Name] = poisonName },
	}
}

func TestKitPassesACorrectTarget(t *testing.T) {
	Run(t, memAdapter(""))
}

// TestKitCatchesBrokenTargets runs the kit on targets that each break one rule, in a child test
// process, and checks that the case for that rule fails.
func TestKitCatchesBrokenTargets(t *testing.T) {
	if fault := os.Getenv("SINKTEST_FAULT"); fault != "" {
		Run(t, memAdapter(fault))
		return
	}
	for fault, failing := range map[string]string{
		"absent-as-null":    CaseUnchangedFieldsKept,
		"truncate-ignored":  CaseTruncateInOrder,
		"retryable-poison":  CasePoisonIsolated,
		"offset-not-atomic": CaseOffsetsAtomic,
		"float-numbers":     CaseBigNumbers,
	} {
		t.Run(fault, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestKitCatchesBrokenTargets$", "-test.v")
			cmd.Env = append(os.Environ(), "SINKTEST_FAULT="+fault)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the kit passed a target whose fault is %s:\n%s", fault, out)
			}
			if want := "--- FAIL: TestKitCatchesBrokenTargets/" + failing; !strings.Contains(string(out), want) {
				t.Fatalf("fault %s: want %q in the output:\n%s", fault, want, out)
			}
		})
	}
}

func TestSkipNamesMustBeCases(t *testing.T) {
	if os.Getenv("SINKTEST_BADSKIP") != "" {
		a := memAdapter("")
		a.Skip = map[string]string{"Truncate": "typo"}
		Run(t, a)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSkipNamesMustBeCases$")
	cmd.Env = append(os.Environ(), "SINKTEST_BADSKIP=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `Skip names "Truncate", which is not a case`) {
		t.Fatalf("a Skip naming no case was accepted: %v\n%s", err, out)
	}
}
