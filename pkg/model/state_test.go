package model

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestStateRoundTrip: entries written are read back in order, in key order for integer keys
// and in hash order for keys with a text column, and the checksum of the file is the one the
// writer computed.
func TestStateRoundTrip(t *testing.T) {
	for _, c := range []struct {
		enc    keyEnc
		hashed bool
		keys   [][]string
	}{
		{"i", false, [][]string{{"-3"}, {"0"}, {"12"}, {"99"}}},
		{"it", true, [][]string{{"-3", "a"}, {"-3", "b"}, {"0", ""}, {"12", "zz"}}},
	} {
		t.Run(string(c.enc), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "m.state")
			sw, err := newStateWriter(path, c.enc)
			if err != nil {
				t.Fatal(err)
			}
			var keys [][]byte
			for _, k := range c.keys {
				key, err := c.enc.encode(nil, bytesOf(k))
				if err != nil {
					t.Fatal(err)
				}
				keys = append(keys, key)
			}
			slices.SortFunc(keys, func(a, b []byte) int { return stateOrder(c.hashed, a, b) })
			for i, key := range keys {
				if err := sw.add(key, uint64(i+1)); err != nil {
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
			if sr.hashed != c.hashed || sr.enc != c.enc {
				t.Fatalf("read encoding %q hashed %v", sr.enc, sr.hashed)
			}
			for i := 0; !sr.done; i++ {
				if string(sr.cur.key) != string(keys[i]) || sr.cur.hash != uint64(i+1) {
					t.Fatalf("entry %d: %q %d", i, sr.cur.key, sr.cur.hash)
				}
				if err := sr.next(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// stateOrder compares state keys as a state file of that order holds them.
func stateOrder(hashed bool, a, b []byte) int {
	if hashed {
		if c := cmp.Compare(keyHash(a), keyHash(b)); c != 0 {
			return c
		}
	}
	return bytes.Compare(a, b)
}

func bytesOf(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// writeKeyOrderedState writes entries as a version 1 state of text keys, in key order, as
// versions before hash-ordered states did.
func writeKeyOrderedState(t *testing.T, path string, enc keyEnc, entries []entry) {
	t.Helper()
	slices.SortFunc(entries, func(a, b entry) int { return bytes.Compare(a.key, b.key) })
	buf := []byte(stateMagic + "key " + string(enc) + "\n")
	for _, e := range entries {
		buf = binary.AppendUvarint(buf, uint64(len(e.key)))
		buf = binary.BigEndian.AppendUint64(append(buf, e.key...), e.hash)
	}
	if err := os.WriteFile(path, buf, 0o600); err != nil {
		t.Fatal(err)
	}
}

// FuzzStateFile: a damaged state file is an error, never a panic or a hang.
func FuzzStateFile(f *testing.F) {
	f.Add([]byte(stateHeader("t") + "\x02a\x00\x00\x00\x00\x00\x00\x00\x00\x01"))
	f.Add([]byte(stateHeader("it")))
	f.Add([]byte(stateMagic + "key x\n"))
	f.Add([]byte(stateMagic + "key t\n\x02a\x00\x00\x00\x00\x00\x00\x00\x00\x01"))
	f.Add([]byte(stateMagic2 + "key t\norder key\n"))
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
