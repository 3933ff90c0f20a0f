package connspec

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

type item struct {
	Name string `with:"name,required" doc:"The item's name."`
	Kind string `with:"kind" default:"a" enum:"a,b"`
}

type testSettings struct {
	URL     string            `with:"url,required,secret" doc:"The URL." example:"https://h"`
	Mode    string            `with:"mode" default:"hash" enum:"hash,json,true,false"`
	Timeout time.Duration     `with:"timeout" default:"10s"`
	TTL     time.Duration     `with:"ttl" min:"1ms"`
	Batch   int               `with:"batch" default:"500" min:"1"`
	Rate    float64           `with:"rate"`
	On      bool              `with:"on" default:"true"`
	Hosts   []string          `with:"hosts"`
	Headers map[string]string `with:"headers"`
	Items   []item            `with:"items"`
}

func TestDecodeDefaultsAndForms(t *testing.T) {
	got, ps := Decode[testSettings](map[string]any{
		"url": "https://h", "ttl": "1h", "batch": "7", "rate": uint64(3), "on": "false", "hosts": "a:1, b:2",
		"headers": map[string]any{"X": "y"}, "items": []any{map[string]any{"name": "n"}}, "mode": true,
	})
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	want := testSettings{URL: "https://h", Mode: "true", Timeout: 10 * time.Second, TTL: time.Hour, Batch: 7, Rate: 3,
		Hosts: []string{"a:1", "b:2"}, Headers: map[string]string{"X": "y"}, Items: []item{{Name: "n", Kind: "a"}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}

// TestDecodeReportsEverything: every problem of a block, each at its path, in one answer; a
// secret's value is never quoted.
func TestDecodeReportsEverything(t *testing.T) {
	_, ps := Decode[testSettings](map[string]any{
		"url": 42, "mode": "list", "timeout": "soon", "ttl": "0s", "batch": "lots", "rate": "fast", "on": "maybe",
		"hosts": []any{"", 5}, "headers": map[string]any{"X": 1}, "items": []any{map[string]any{"kind": "c", "nam": "x"}, "x"},
		"tmeout": "1s", "zzz": 1,
	})
	want := map[string]string{
		"with.url":           "expected a string",
		"with.mode":          "list is not supported; expected one of hash, json, true, false",
		"with.timeout":       `expected a duration such as "10s"`,
		"with.ttl":           "0s is too short; expected at least 1ms",
		"with.batch":         "lots is not an integer",
		"with.rate":          "fast is not a number",
		"with.on":            "expected true or false, got maybe",
		"with.hosts":         "empty entry (item 0)",
		"with.hosts[1]":      "expected a string, got 5",
		"with.headers.X":     "expected a string, got 1",
		"with.items[0].kind": "c is not supported; expected one of a, b",
		"with.items[0].nam":  "unknown setting; did you mean name?",
		"with.items[0].name": "required: the item's name",
		"with.items[1]":      "expected a mapping",
		"with.tmeout":        "unknown setting; did you mean timeout?",
		"with.zzz":           "unknown setting; expected one of url, mode, timeout",
	}
	got := map[string]string{}
	for _, p := range ps {
		got[p.Path] = p.Message
		if strings.Contains(p.Message, "42") {
			t.Errorf("%s quotes the secret: %s", p.Path, p.Message)
		}
	}
	for path, msg := range want {
		if !strings.Contains(got[path], msg) {
			t.Errorf("%s: got %q, want it to contain %q", path, got[path], msg)
		}
	}
	if len(ps) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(ps), len(want), ps)
	}
}

func TestRequired(t *testing.T) {
	_, ps := Decode[testSettings](map[string]any{"url": ""})
	if len(ps) != 1 || ps[0].Error() != "with.url: required: the URL (e.g. https://h)" {
		t.Errorf("problems %v", ps)
	}
}

func TestSpec(t *testing.T) {
	s := Of[testSettings]("test", "A test connector.")
	f, ok := s.Field("items")
	if !ok || f.Type != "list of objects" || len(f.Fields) != 2 || !f.Fields[0].Required {
		t.Errorf("items field %+v", f)
	}
	if f, _ := s.Field("url"); !f.Secret || !f.Required || f.Example != "https://h" {
		t.Errorf("url field %+v", f)
	}
	if f, _ := s.Field("timeout"); f.DefaultText() != "10s" || f.Type != "duration" {
		t.Errorf("timeout field %+v", f)
	}
	md := Markdown("Connectors", "intro", []Spec{s})
	for _, want := range []string{"## test", "| `items[].name` | string |", "| `timeout` | duration | `10s` |", "**Required.** The URL. Secret"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

// FuzzDecode: any `with` block (as a YAML decoder may produce it) decodes or yields problems,
// never a panic.
func FuzzDecode(f *testing.F) {
	f.Add("url", "https://h", "batch", int64(3), "items", "x")
	f.Add("timeout", "1s", "ttl", int64(-1), "hosts", "a,,b")
	f.Add("mode", "true", "rate", int64(1<<62), "headers", "")
	f.Fuzz(func(t *testing.T, k1, v1, k2 string, n int64, k3, v3 string) {
		with := map[string]any{k1: v1, k2: n, k3: []any{map[string]any{"name": v3}, v3, float64(n) / 3}}
		Decode[testSettings](with)
	})
}
