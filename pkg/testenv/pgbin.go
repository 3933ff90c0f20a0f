package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// findPGBin returns the directory holding initdb, pg_ctl and postgres: `pg_config --bindir`, else
// the newest /usr/lib/postgresql/*/bin, else the directory of initdb on PATH.
func findPGBin() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); hasServerBinaries(dir) {
			return dir, nil
		}
	}
	if dir := newestDebianBin(); dir != "" {
		return dir, nil
	}
	if p, err := exec.LookPath("initdb"); err == nil && hasServerBinaries(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: " +
		"no usable `pg_config --bindir`, no /usr/lib/postgresql/*/bin, no initdb on PATH; " +
		"install the PostgreSQL server package (e.g. apt-get install postgresql)")
}

func hasServerBinaries(dir string) bool {
	for _, name := range []string{"initdb", "pg_ctl", "postgres"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			return false
		}
	}
	return true
}

func newestDebianBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	dirs = slices.DeleteFunc(dirs, func(d string) bool { return !hasServerBinaries(d) })
	slices.SortFunc(dirs, func(a, b string) int { return pgVersion(b) - pgVersion(a) })
	if len(dirs) == 0 {
		return ""
	}
	return dirs[0]
}

// pgVersion turns /usr/lib/postgresql/15/bin (or 9.6) into a sortable number.
func pgVersion(binDir string) int {
	major, minor, _ := strings.Cut(filepath.Base(filepath.Dir(binDir)), ".")
	ma, _ := strconv.Atoi(major)
	mi, _ := strconv.Atoi(minor)
	return ma*100 + mi
}

// osUser is the account the server runs as when we are root.
type osUser struct {
	name     string
	uid, gid int
}

// serverUser returns nil when the current user can run the server itself, or the postgres OS
// user when we are root (initdb and postgres refuse to run as root).
func serverUser() (*osUser, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		return nil, fmt.Errorf("running as root needs runuser to start PostgreSQL as user postgres: %w", err)
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root needs the postgres OS user (initdb refuses root): %w", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return nil, fmt.Errorf("uid of user postgres: %w", err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return nil, fmt.Errorf("gid of user postgres: %w", err)
	}
	return &osUser{name: u.Username, uid: uid, gid: gid}, nil
}

// run runs bin/name with args, as u when u is not nil, in dir, without the caller's PG*
// environment variables, killing it when ctx ends. It returns the combined output.
func run(ctx context.Context, u *osUser, dir, bin, name string, args ...string) ([]byte, error) {
	path := filepath.Join(bin, name)
	var cmd *exec.Cmd
	if u != nil {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", u.name, "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	cmd.Dir = dir
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PG") })
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

// handOver makes dir (recursively) owned by u and its parents searchable, so u can use it.
func handOver(u *osUser, dir string) error {
	if u == nil {
		return nil
	}
	err := filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, u.uid, u.gid)
	})
	if err != nil {
		return fmt.Errorf("chown %s to %s: %w", dir, u.name, err)
	}
	return openParents(u, dir)
}

// openParents adds o+x to the parents of dir below the temp directory that we own (t.TempDir
// creates them 0700), then checks that u can write dir.
func openParents(u *osUser, dir string) error {
	tmp := filepath.Clean(os.TempDir())
	for p := filepath.Dir(dir); strings.HasPrefix(p, tmp+string(filepath.Separator)); p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err == nil && fi.Mode().Perm()&0o001 == 0 {
			_ = os.Chmod(p, fi.Mode().Perm()|0o001)
		}
	}
	if out, err := exec.Command("runuser", "-u", u.name, "--", "test", "-w", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("user %s cannot write %s (make its parent directories searchable: chmod o+x): %w %s",
			u.name, dir, err, out)
	}
	return nil
}
