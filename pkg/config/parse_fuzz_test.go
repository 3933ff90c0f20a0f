package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: any pipeline file either loads or is refused with a *ValidationError (or a read
// error for YAML it cannot parse); the walker (flow-style scalars, comma lists from ${VAR}s)
// never panics on it.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../../examples/*.yaml")
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("kafka: {brokers: [host:9092, ${BF_FUZZ_LIST}]}\nsinks: [{name: s, topics: [t:1], connector: postgres, key: [id]}]\n"))
	f.Add([]byte("kafka: {brokers: [a: b: c]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		t.Setenv("BF_FUZZ_LIST", "a:1,b:2")
		_, err := Parse(data, "fuzz.yaml")
		var ve *ValidationError
		if err != nil && !errors.As(err, &ve) {
			t.Fatalf("%T: %v", err, err)
		}
	})
}
