package capture

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/backflow-dev/backflow/pkg/codec"
	"github.com/backflow-dev/backflow/pkg/config"
)

// TestReplaySpillFailures: the replay of a committed streamed transaction hands its messages
// over in order across batches, and stops at the first failure, whether the handler's or a
// damaged encoded record's, with that error; the reader goroutine ends and the file is removed
// either way.
func TestReplaySpillFailures(t *testing.T) {
	const total = 3*replayBatchSize + 7
	boom := errors.New("boom")
	cases := []struct {
		name     string
		damaged  int // index of a damaged encoded record, -1 for none
		failAt   int // message the handler fails at, -1 for none
		wantN    int
		wantErr  error
		wantText string
	}{
		{"all", -1, -1, total, nil, ""},
		{"handler fails in the second batch", -1, replayBatchSize + 3, replayBatchSize + 4, boom, ""},
		{"damaged record in the third batch", 2*replayBatchSize + 1, -1, 2*replayBatchSize + 2, nil, "is damaged"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sp, err := openSpills(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer sp.close()
			if err := sp.start(9, true); err != nil {
				t.Fatal(err)
			}
			for i := range total {
				typ, body := byte('I'), []byte(fmt.Sprint(i))
				if i == tc.damaged {
					typ, body = spillEncoded, []byte{0, 0, 0, 1} // cut short after the relation id
				}
				if err := sp.add(9, 9, pglogrepl.LSN(i+1), typ, body); err != nil {
					t.Fatal(err)
				}
			}
			s := &stream{spill: sp, c: &Capture{pg: config.Postgres{StatusInterval: time.Hour}}, statusAt: time.Now()}
			var seen int
			n, _, err := s.replaySpill(context.Background(), 9, codec.Commit{}, nil, func(at pglogrepl.LSN, msg []byte) error {
				if want := fmt.Sprintf("I%d", seen); string(msg) != want || at != pglogrepl.LSN(seen+1) {
					t.Fatalf("message %d: %q at %s, want %q at %s", seen, msg, at, want, pglogrepl.LSN(seen+1))
				}
				if seen == tc.failAt {
					return boom
				}
				seen++
				return nil
			})
			switch {
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr),
				tc.wantText != "" && (err == nil || !strings.Contains(err.Error(), tc.wantText)),
				tc.wantErr == nil && tc.wantText == "" && err != nil:
				t.Fatalf("replay error %v, want %v %q", err, tc.wantErr, tc.wantText)
			}
			if n != tc.wantN {
				t.Errorf("replay handled %d messages, want %d", n, tc.wantN)
			}
			if sp.pending() {
				t.Error("the transaction is still open after its replay")
			}
			if files, _ := filepath.Glob(filepath.Join(dir, "*"+spillExt)); len(files) != 0 {
				t.Errorf("spill files left: %v", files)
			}
		})
	}
}
