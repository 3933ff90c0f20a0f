package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// daemon is a server process run in the foreground of a goroutine of ours, its output in a log
// file. The goroutine keeps its OS thread locked while the server runs: the server gets SIGTERM
// (Pdeathsig) when that thread, and so the test binary, dies, so a killed test run leaves no
// server behind.
type daemon struct {
	name string // for messages: "MariaDB", "Redis"
	log  string
	done chan struct{}
	err  error // the Wait result, set before done closes
	cmd  *exec.Cmd
}

// startDaemon starts path with args, its output appended to logFile.
func startDaemon(name, logFile, path string, args ...string) (*daemon, error) {
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	d := &daemon{name: name, log: logFile, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		defer lf.Close()
		d.cmd = exec.Command(path, args...)
		d.cmd.Stdout, d.cmd.Stderr = lf, lf
		d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
		if err := d.cmd.Start(); err != nil {
			started <- fmt.Errorf("start %s (%s): %w", name, path, err)
			return
		}
		started <- nil
		d.err = d.cmd.Wait()
		close(d.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return d, nil
}

// exited reports whether the server has ended, and why.
func (d *daemon) exited() (bool, error) {
	select {
	case <-d.done:
		return true, d.err
	default:
		return false, nil
	}
}

// waitReady calls ready until it succeeds, the server exits, or ctx ends.
func (d *daemon) waitReady(ctx context.Context, ready func(context.Context) error) error {
	for {
		err := ready(ctx)
		if err == nil {
			return nil
		}
		if gone, werr := d.exited(); gone {
			return fmt.Errorf("%s exited before accepting connections (%v)\nserver log %s:\n%s",
				d.name, werr, d.log, tailFile(d.log))
		}
		select {
		case <-ctx.Done():
			_ = d.stop()
			return fmt.Errorf("%s not ready: %w (last: %v)\nserver log %s:\n%s",
				d.name, ctx.Err(), err, d.log, tailFile(d.log))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM, and SIGKILL when the server has not ended after a minute.
func (d *daemon) stop() error {
	if gone, _ := d.exited(); gone {
		return nil
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", d.name, err)
	}
	select {
	case <-d.done:
		return nil
	case <-time.After(time.Minute):
		_ = d.cmd.Process.Kill()
		<-d.done
		return fmt.Errorf("%s did not stop within a minute of SIGTERM; killed\nserver log %s:\n%s",
			d.name, d.log, tailFile(d.log))
	}
}

// ownerFile names, in a server's temp directory, the pid of the process that made it.
const ownerFile = "owner.pid"

// makeServerDir creates a temp directory for a server, named from pattern (os.MkdirTemp), with
// the current pid in it. It first removes the directories of earlier processes that died without
// closing their servers (a killed test binary: Pdeathsig stops the servers, not the cleanup).
func makeServerDir(pattern string) (string, error) {
	sweepStale(pattern)
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return "", fmt.Errorf("create temp dir %s: %w", pattern, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("write %s: %w", ownerFile, err)
	}
	return dir, nil
}

// sweepStale removes the directories matching pattern whose owner process is gone. A directory
// without an owner file may be one being made right now, and is left alone.
func sweepStale(pattern string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), pattern))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

// processAlive reports whether a process with this pid exists (signal 0 checks without sending).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
