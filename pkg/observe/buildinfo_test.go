package observe

import (
	"testing"

	"github.com/backflow-dev/backflow/pkg/buildinfo"
)

// TestBuildInfoMetric: backflow_build_info is 1, labelled with the running build.
func TestBuildInfoMetric(t *testing.T) {
	m := NewMetrics()
	i := buildinfo.Read()
	families, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "backflow_build_info" {
			continue
		}
		got := map[string]string{}
		for _, l := range f.GetMetric()[0].GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if got["version"] != i.Version || got["commit"] != i.Commit || got["goversion"] != i.GoVersion || f.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Fatalf("backflow_build_info %v = %v; want the labels of %+v and 1", got, f.GetMetric()[0].GetGauge().GetValue(), i)
		}
		return
	}
	t.Fatal("no backflow_build_info")
}
