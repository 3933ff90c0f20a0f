package config

import (
	"fmt"
	"strings"
)

// SharedTargetWarnings flags each sink that reads more than one table (several from entries or
// topics, or a schema.* pattern) and applies truncates (on_truncate: truncate, the default): a
// target knows no source table, so a TRUNCATE of any one of them removes the rows of all of them
// from the table or key space they share, and nothing brings those back until they change.
// Lines are 0; ParseWithWarnings adds them.
func (p *Pipeline) SharedTargetWarnings() []FieldError {
	var ws []FieldError
	for i, s := range p.Sinks {
		if s.OnTruncate == OnTruncateIgnore {
			continue
		}
		inputs, field := s.From, "from"
		if len(s.Topics) > 0 {
			inputs, field = s.Topics, "topics"
		}
		if len(inputs) < 2 && !(len(inputs) == 1 && strings.HasSuffix(inputs[0], ".*")) {
			continue
		}
		ws = append(ws, FieldError{Path: index("sinks", i) + "." + field, Message: fmt.Sprintf(
			"sink %q writes several tables into one target and applies truncates (on_truncate: truncate): a TRUNCATE of "+
				"any one of them (a reload) empties the target of the rows of all of them; set on_truncate: ignore, or give "+
				"each table a sink (and a target table) of its own", s.Name)})
	}
	return ws
}
