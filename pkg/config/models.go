package config

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// ModelSchema is the schema part of a model's name in topics, events and sinks' from: a model
// named lead_scores is "model.lead_scores", its topic "<topic_prefix>.model.lead_scores".
const ModelSchema = "model"

var (
	modelNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,62}$`)
	// cronParser reads the standard five fields and the @hourly-style descriptors.
	cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
)

// Model returns the model named name.
func (p *Pipeline) Model(name string) (Model, bool) {
	for _, m := range p.Models {
		if m.Name == name {
			return m, true
		}
	}
	return Model{}, false
}

// ModelsDir is where the models' state files are: models_state_dir, else "<data_dir>/models".
func (p *Pipeline) ModelsDir() string {
	if p.ModelsStateDir != "" {
		return p.ModelsStateDir
	}
	dir := p.DataDir
	if dir == "" {
		dir = DefaultDataDir
	}
	return filepath.Join(dir, "models")
}

// ModelTopic is the topic a model publishes to: its topic setting, else
// "<topic_prefix>.model.<name>".
func (p *Pipeline) ModelTopic(m Model) string {
	if m.Topic != "" {
		return m.Topic
	}
	return p.TopicFor(ModelSchema + "." + m.Name)
}

// modelOf returns the model a sink's from entry ("model.<name>") names.
func (p *Pipeline) modelOf(entry string) (Model, bool) {
	name, ok := strings.CutPrefix(entry, ModelSchema+".")
	if !ok {
		return Model{}, false
	}
	return p.Model(name)
}

// Schedule is a model's every setting, parsed: a fixed interval or a cron schedule.
type Schedule struct {
	Interval time.Duration
	Cron     cron.Schedule
}

// Next returns the first run time after t.
func (s Schedule) Next(t time.Time) time.Time {
	if s.Cron != nil {
		return s.Cron.Next(t)
	}
	return t.Add(s.Interval)
}

// ParseEvery reads a model's every: a positive Go duration ("5m") or a cron expression.
func ParseEvery(s string) (Schedule, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return Schedule{}, errNonPositiveEvery
		}
		return Schedule{Interval: d}, nil
	}
	sched, err := cronParser.Parse(s)
	if err != nil {
		return Schedule{}, err
	}
	return Schedule{Cron: sched}, nil
}

type everyError string

func (e everyError) Error() string { return string(e) }

const errNonPositiveEvery = everyError("the interval must be positive")

// Query returns the model's query: its sql, or every column of its table or view.
func (m Model) Query() string {
	switch {
	case m.Table != "":
		return "SELECT * FROM " + quoteQualified(m.Table)
	case m.View != "":
		return "SELECT * FROM " + quoteQualified(m.View)
	}
	return m.SQL
}

// quoteQualified quotes "schema.name" as an identifier pair; validation has checked its form.
func quoteQualified(s string) string {
	schema, name, _ := strings.Cut(s, ".")
	return `"` + strings.ReplaceAll(schema, `"`, `""`) + `"."` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

func validateModels(p *Pipeline, c *collector) {
	if len(p.Models) > 0 && !p.HasSource() {
		c.add("models", "models query the warehouse: they need source.postgres")
	}
	seen := map[string]bool{}
	for i, m := range p.Models {
		path := index("models", i)
		switch {
		case m.Name == "":
			c.add(path+".name", "required; expected a name of letters, digits and underscores, e.g. lead_scores")
		case !modelNameRe.MatchString(m.Name):
			c.add(path+".name", "invalid model name %q; expected a letter or underscore, then letters, digits or underscores", m.Name)
		case seen[m.Name]:
			c.add(path+".name", "duplicate model name %q", m.Name)
		}
		seen[m.Name] = true
		validateModelQuery(m, path, c)
		validateModelKey(m, path, c)
		validateModelSchedule(p, m, path, c)
		if m.Topic != "" && !topicRe.MatchString(m.Topic) {
			c.add(path+".topic", "invalid topic name %q; expected letters, digits, '.', '_' or '-'", m.Topic)
		}
	}
}

func validateModelQuery(m Model, path string, c *collector) {
	set := 0
	for _, q := range []string{m.SQL, m.Table, m.View} {
		if strings.TrimSpace(q) != "" {
			set++
		}
	}
	switch {
	case set == 0:
		c.add(path+".sql", "required; expected the model's query (sql:), or a table: or view: to read whole")
	case set > 1:
		c.add(path+".sql", "expected one of sql, table and view")
	}
	for _, f := range []struct{ name, v string }{{"table", m.Table}, {"view", m.View}} {
		if f.v != "" && (!validTable(f.v) || strings.HasSuffix(f.v, ".*")) {
			c.add(path+"."+f.name, `invalid %s %q; expected "schema.name"`, f.name, f.v)
		}
	}
}

func validateModelKey(m Model, path string, c *collector) {
	if len(m.Key) == 0 {
		c.add(path+".key", "required; expected the result columns that identify a row, e.g. [email]")
	}
	for i, k := range m.Key {
		switch {
		case k == "":
			c.add(index(path+".key", i), "expected a column name")
		case slices.Contains(m.Key[:i], k):
			c.add(index(path+".key", i), "column %q is already in the key", k)
		}
	}
}

func validateModelSchedule(p *Pipeline, m Model, path string, c *collector) {
	if m.Every != "" {
		if _, err := ParseEvery(m.Every); err != nil {
			c.add(path+".every", `invalid schedule %q: %v; expected a duration such as "5m" or a cron expression such as "*/15 * * * *"`, m.Every, err)
		}
	}
	if m.Debounce < 0 {
		c.add(path+".debounce", msgPositiveDuration)
	}
	tables := p.Source.Postgres.Tables
	for i, t := range m.RefreshOn {
		switch {
		case !validTable(t) || strings.HasSuffix(t, ".*"):
			c.add(index(path+".refresh_on", i), `invalid table %q; expected "schema.table"`, t)
		case len(tables) > 0 && !covered(t, tables):
			c.add(index(path+".refresh_on", i), "table %q is not captured, so its changes are not seen; expected one of source.postgres.tables (%s)", t, strings.Join(tables, ", "))
		}
	}
}
