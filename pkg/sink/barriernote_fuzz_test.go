package sink

import (
	"encoding/json"
	"testing"
)

// FuzzBarrierNote: whatever a record of the barrier topic holds, reading it as a note and adding
// it to the state never panics, and a note for one truncate changes no other's state.
func FuzzBarrierNote(f *testing.F) {
	for _, s := range []string{`{"topic":"t","truncate":"0/1","partitions":3,"reached":1}`,
		`{"topic":"t","truncate":"0/1","partitions":3,"applied":true}`, `{"reached":-5}`, `null`, `[]`, `{"partitions":"x"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		b := &barrierLog{state: map[barrierID]*barrierState{}}
		other := barrierID{"other-topic\x01", "other"}
		b.state[other] = &barrierState{partitions: 2, reached: map[int32]bool{0: true}}
		var n barrierNote
		if json.Unmarshal(value, &n) != nil {
			return
		}
		if n.Topic == other.topic && n.Truncate == other.truncate {
			return
		}
		b.note(n)
		if st := b.state[other]; st.applied || len(st.reached) != 1 {
			t.Fatalf("note %s changed another truncate's state: %+v", value, st)
		}
	})
}
