package connspec

import (
	"fmt"
	"strings"
)

// Markdown writes the reference of the given connectors' settings: one section per connector
// with a table of its settings (objects of list settings as name[].setting rows).
func Markdown(title, intro string, specs []Spec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n%s\n\n", title, intro)
	for _, s := range specs {
		fmt.Fprintf(&b, "- [%s](#%s)\n", s.Name, s.Name)
	}
	for _, s := range specs {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n", s.Name, s.Doc)
		b.WriteString("| Setting | Type | Default | Description |\n|---|---|---|---|\n")
		writeRows(&b, "", s.Fields)
	}
	return b.String()
}

func writeRows(b *strings.Builder, prefix string, fields []Field) {
	for _, f := range fields {
		def := ""
		if t := f.DefaultText(); t != "" {
			def = "`" + t + "`"
		}
		fmt.Fprintf(b, "| `%s%s` | %s | %s | %s |\n", prefix, f.Name, f.Type, def, cell(describe(f)))
		if len(f.Fields) > 0 {
			writeRows(b, prefix+f.Name+"[].", f.Fields)
		}
	}
}

// describe is the field's doc with what else a reader must know: required, secret, allowed
// values, minimum, example.
func describe(f Field) string {
	var parts []string
	if f.Required {
		parts = append(parts, "**Required.**")
	}
	if f.Doc != "" {
		parts = append(parts, f.Doc)
	}
	if f.Secret {
		parts = append(parts, "Secret: give it as `${VAR}`; it is never logged.")
	}
	if f.Enum != nil {
		parts = append(parts, "One of `"+strings.Join(f.Enum, "`, `")+"`.")
	}
	if f.Min != nil {
		parts = append(parts, "At least "+f.MinText()+".")
	}
	if f.Example != "" {
		parts = append(parts, "Example: `"+f.Example+"`.")
	}
	return strings.Join(parts, " ")
}

// cell escapes what would end a table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
