package capture

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/jackc/pglogrepl"
)

// TestSpills: a transaction's messages come back in order without those of its rolled-back
// subtransactions; an aborted transaction and a first segment sent again leave nothing of what
// came before; files of an earlier run are removed at start, other files are not.
func TestSpills(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "notes.txt")
	for _, f := range []string{filepath.Join(dir, "12.spill"), other} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sp, err := openSpills(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.close()
	if _, err := os.Stat(filepath.Join(dir, "12.spill")); !os.IsNotExist(err) {
		t.Errorf("spill file of an earlier run still there: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("a file not a spill file was removed: %v", err)
	}
	empty, err := openSpills(filepath.Join(dir, "slot"))
	if err != nil {
		t.Fatal(err)
	}
	empty.close()
	if _, err := os.Stat(empty.dir); !os.IsNotExist(err) {
		t.Errorf("an empty spill directory is left after close: %v", err)
	}
	replaced, err := openSpills(filepath.Join(dir, "replaced"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(replaced.dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(replaced.dir, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	replaced.close()
	if _, err := os.Stat(replaced.dir); err != nil {
		t.Errorf("a file in the spill directory's place was removed at close: %v", err)
	}

	add := func(xid, sub uint32, at pglogrepl.LSN, body string) {
		t.Helper()
		if err := sp.add(xid, sub, at, body[0], []byte(body[1:])); err != nil {
			t.Fatal(err)
		}
	}
	replay := func(xid uint32) []string {
		t.Helper()
		var got []string
		err := replayed(sp, xid, func(at pglogrepl.LSN, msg []byte) error {
			got = append(got, at.String()+" "+string(msg))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if err := sp.add(1, 1, 1, 'I', nil); err == nil {
		t.Error("a message of a transaction never started was spilled")
	}

	for _, xid := range []uint32{1, 2, 3} {
		if err := sp.start(xid, true); err != nil {
			t.Fatal(err)
		}
	}
	add(1, 1, 10, "Rrel")
	add(2, 2, 11, "Igone")
	add(1, 5, 12, "Isub rolled back")
	add(3, 3, 13, "Istale")
	add(1, 1, 14, "Ikept")
	add(1, 6, 15, "Isub kept")
	if err := sp.start(1, false); err != nil { // a later segment continues the file
		t.Fatal(err)
	}
	add(1, 1, 16, "Ulast")
	if err := sp.start(3, true); err != nil { // the first segment again: what came before goes
		t.Fatal(err)
	}
	add(3, 3, 17, "Ifresh")
	sp.abort(1, 5)
	sp.abort(2, 2)
	if !sp.pending() {
		t.Error("transactions 1 and 3 open, none pending")
	}

	want := []string{"0/A Rrel", "0/E Ikept", "0/F Isub kept", "0/10 Ulast"}
	if got := replay(1); !slices.Equal(got, want) {
		t.Errorf("transaction 1 replayed %q, want %q", got, want)
	}
	if got := replay(2); len(got) != 0 {
		t.Errorf("aborted transaction 2 replayed %q", got)
	}
	if got, want := replay(3), []string{"0/11 Ifresh"}; !slices.Equal(got, want) {
		t.Errorf("transaction 3 replayed %q, want %q", got, want)
	}
	if sp.pending() {
		t.Error("every transaction ended, still pending")
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*"+spillExt)); len(files) > 0 {
		t.Errorf("spill files left after every transaction ended: %v", files)
	}
}

// replayed reads transaction xid's file as a commit does, then removes it.
func replayed(sp *spills, xid uint32, fn func(at pglogrepl.LSN, msg []byte) error) error {
	defer sp.end(xid)
	return sp.read(xid, fn)
}
