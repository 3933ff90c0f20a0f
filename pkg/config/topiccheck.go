package config

import (
	"fmt"
	"strings"

	"github.com/agnivade/levenshtein"
)

// maxTopicTypo is the most edits that make a sink's topic a likely typo of one the pipeline
// writes.
const maxTopicTypo = 2

// TopicWarnings flags each topic a sink lists that nothing in this pipeline writes but that is
// within a couple of edits of a topic it does write (a captured table's or a model's): the sink
// would wait for a topic that never comes, and say nothing. A topic far from all of them is taken
// for another tool's, and left alone. Lines are 0; ParseWithWarnings adds them.
func (p *Pipeline) TopicWarnings() []FieldError {
	written, prefixes := p.writtenTopics()
	if len(written) == 0 && len(prefixes) == 0 {
		return nil
	}
	var ws []FieldError
	for i, s := range p.Sinks {
		for j, topic := range s.Topics {
			if written[topic] || hasAnyPrefix(topic, prefixes) {
				continue
			}
			if near, ok := nearest(topic, written); ok {
				ws = append(ws, FieldError{Path: index(index("sinks", i)+".topics", j), Message: fmt.Sprintf(
					"no table or model of this pipeline writes topic %q; did you mean %q? (a topic another tool writes is fine)", topic, near)})
			}
		}
	}
	return ws
}

// writtenTopics returns the topics the pipeline's capture and models write: whole names, and
// the prefixes of the tables of schema.* entries.
func (p *Pipeline) writtenTopics() (map[string]bool, []string) {
	written := map[string]bool{}
	var prefixes []string
	for _, t := range p.Source.Postgres.Tables {
		if schema, ok := strings.CutSuffix(t, ".*"); ok {
			prefixes = append(prefixes, TopicName(p.Kafka.topicPrefix()+"."+schema+"."))
			continue
		}
		written[p.TopicFor(t)] = true
	}
	for _, m := range p.Models {
		written[p.ModelTopic(m)] = true
	}
	return written, prefixes
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// nearest returns the topic of written closest to topic, when it is at most maxTopicTypo edits
// away (the first in name order on a tie).
func nearest(topic string, written map[string]bool) (string, bool) {
	best, bestDist := "", maxTopicTypo+1
	for w := range written {
		d := levenshtein.ComputeDistance(topic, w)
		if d < bestDist || d == bestDist && w < best {
			best, bestDist = w, d
		}
	}
	return best, bestDist <= maxTopicTypo
}
