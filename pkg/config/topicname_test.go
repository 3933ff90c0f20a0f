package config

import (
	"regexp"
	"strings"
	"testing"
)

func TestTopicName(t *testing.T) {
	legal := regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
	cases := map[string]string{
		"wh.public.inventory":   "wh.public.inventory",
		"wh.public.Order Items": "wh.public.Order_Items",
		"wh.public.price$eur":   "wh.public.price_eur",
		"wh.sales.bücher":       "wh.sales.b_cher",
		`wh.public."quoted"/x`:  "wh.public._quoted__x",
		"wh.public.a-b_c.d":     "wh.public.a-b_c.d",
	}
	for in, want := range cases {
		if got := TopicName(in); got != want {
			t.Errorf("TopicName(%q) = %q, want %q", in, got, want)
		}
	}
	long := "wh.public." + strings.Repeat("x", 300)
	a, b := TopicName(long), TopicName(long+"y")
	if !legal.MatchString(a) || !legal.MatchString(b) {
		t.Fatalf("long names not legal: %q, %q", a, b)
	}
	if a == b {
		t.Errorf("two long names share the topic %q", a)
	}
	if TopicName(long) != a {
		t.Errorf("TopicName is not stable for a long name")
	}
	for in := range cases {
		if got := TopicName(in); !legal.MatchString(got) || TopicName(got) != got {
			t.Errorf("TopicName(%q) = %q: not legal or not a fixed point", in, got)
		}
	}
	p := &Pipeline{Kafka: Kafka{TopicPrefix: "wh"}}
	if got := p.TopicFor("public.price$eur"); got != "wh.public.price_eur" {
		t.Errorf("TopicFor derives %q for a sink's table, want the name capture writes to", got)
	}
}
