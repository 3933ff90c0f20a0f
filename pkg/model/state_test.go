package model

import (
	"os"
	"path/filepath"
	"testing"
)

// TestStateRoundTrip: entries written are read back in order, and the checksum of the file is
// the one the writer computed.
func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.state")
	sw, err := newStateWriter(path, "it")
	if err != nil {
		t.Fatal(err)
	}
	keys := [][]byte{}
	for _, k := range [][2]string{{"-3", "a"}, {"-3", "b"}, {"0", ""}, {"12", "zz"}} {
		key, err := keyEnc("it").encode(nil, [][]byte{[]byte(k[0]), []byte(k[1])})
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
		if err := sw.add(key, uint64(len(keys))); err != nil {
			t.Fatal(err)
		}
	}
	if err := sw.add(keys[0], 9); err == nil {
		t.Fatal("an entry out of order was taken")
	}
	sum := sw.checksum()
	if err := sw.commit(); err != nil {
		t.Fatal(err)
	}
	got, rows, err := fileChecksum(path)
	if err != nil || got != sum || rows != 4 {
		t.Fatalf("checksum %s rows %d (%v), want %s and 4", got, rows, err, sum)
	}
	sr, err := openState(path)
	if err != nil {
		t.Fatal(err)
	}
	defer sr.close()
	for i := 0; !sr.done; i++ {
		if string(sr.cur.key) != string(keys[i]) || sr.cur.hash != uint64(i+1) {
			t.Fatalf("entry %d: %q %d", i, sr.cur.key, sr.cur.hash)
		}
		if err := sr.next(); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzStateFile: a damaged state file is an error, never a panic or a hang.
func FuzzStateFile(f *testing.F) {
	f.Add([]byte(stateHeader("t") + "\x02a\x00\x00\x00\x00\x00\x00\x00\x00\x01"))
	f.Add([]byte(stateHeader("it")))
	f.Add([]byte(stateMagic + "key x\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "s")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		sr, err := openState(path)
		if err != nil {
			return
		}
		defer sr.close()
		for n := 0; !sr.done && n <= len(data); n++ {
			if err := sr.next(); err != nil {
				return
			}
		}
		_, _, _ = fileChecksum(path)
	})
}
