// Package buildinfo tells which build of backflow is running: its version, the commit it was
// built from and that commit's date, as the Go toolchain records them in the binary
// (runtime/debug.ReadBuildInfo). `backflow version`, the backflow_build_info metric and the
// source.version of every event all read it here.
package buildinfo

import (
	"fmt"
	"runtime/debug"
)

// Info describes a build. Fields the toolchain did not record (a build outside a git checkout,
// or with -buildvcs=false) are "unknown".
type Info struct {
	Version   string // the module version: a release tag, a pseudo-version, or "devel"
	Commit    string // the git revision, with "-dirty" when the tree had uncommitted changes
	Date      string // the commit's time, RFC 3339
	GoVersion string
}

// Read returns the running binary's build information.
func Read() Info {
	info := Info{Version: "devel", Commit: "unknown", Date: "unknown", GoVersion: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	info.GoVersion = bi.GoVersion
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		info.Version = v
	}
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Commit = s.Value
		case "vcs.time":
			info.Date = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && info.Commit != "unknown" {
		info.Commit += "-dirty"
	}
	return info
}

// String is the one line `backflow version` prints.
func (i Info) String() string {
	return fmt.Sprintf("backflow %s (commit %s, %s, %s)", i.Version, i.Commit, i.Date, i.GoVersion)
}
