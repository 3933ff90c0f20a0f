// Package child runs the backflow binary as a child process for the benchmark programs and
// measures it: peak RSS, CPU time, and an optional perf recording.
package child

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Build builds cmd/backflow of the module we are in into dir; logf reports progress.
func Build(ctx context.Context, dir string, logf func(format string, args ...any)) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(dir, "backflow")
	logf("building %s", bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/backflow")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build backflow: %w\n%s", err, out)
	}
	return bin, nil
}

// WithoutPGEnv is this process's environment without PG* variables, so children connect only
// where they are told to.
func WithoutPGEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PG") })
}

// Proc is a running child process.
type Proc struct {
	Name    string
	Started time.Time // just before exec
	ended   time.Time // when Wait returned
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed when Wait returns
	waitErr error
}

// Start starts cmd without the caller's PG* variables, its output going to logPath.
func Start(name string, cmd *exec.Cmd, logPath string) (*Proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create %s log: %w", name, err)
	}
	defer logf.Close()
	cmd.Env = WithoutPGEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	p := &Proc{Name: name, cmd: cmd, logPath: logPath, Started: time.Now(), exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { p.waitErr = cmd.Wait(); p.ended = time.Now(); close(p.exited) }()
	return p, nil
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Ended is when the process exited; valid once Exited is closed.
func (p *Proc) Ended() time.Time { return p.ended }

// Err is how the process exited (nil for status 0); valid once Exited is closed.
func (p *Proc) Err() error { return p.waitErr }

// VmHWM reads the process's peak resident set size so far, in bytes (0 when unavailable).
func (p *Proc) VmHWM() int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.PID()))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Stop sends SIGTERM and waits for the process to exit cleanly, killing it after 30 s.
func (p *Proc) Stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("signal %s: %w", p.Name, err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("%s did not stop within 30s of SIGTERM; log tail:\n%s", p.Name, p.LogTail())
	}
	if p.waitErr != nil {
		return fmt.Errorf("%s exited with %v after SIGTERM; log tail:\n%s", p.Name, p.waitErr, p.LogTail())
	}
	return nil
}

// Kill ends the process if it is still running (on the error paths).
func (p *Proc) Kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// MaxRSS is the peak resident set size over the process's life, in bytes; after it exited.
func (p *Proc) MaxRSS() int64 {
	if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		return ru.Maxrss << 10 // kilobytes on Linux
	}
	return 0
}

// CPU is the user + system time of the process; after it exited.
func (p *Proc) CPU() time.Duration {
	return p.cmd.ProcessState.UserTime() + p.cmd.ProcessState.SystemTime()
}

// LogTail is the end of the process's log.
func (p *Proc) LogTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// ProcCPU returns the user + system time of process pid from /proc (0 when it is gone).
func ProcCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses: state is [0], utime [11], stime [12].
	_, rest, _ := bytes.Cut(b, []byte(") "))
	f := strings.Fields(string(rest))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// SelfCPU is this process's user + system time.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// PerfRecorder is `perf record -g` attached to a process, when asked for.
type PerfRecorder struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartPerf attaches `perf record -g` to pid, writing to out; nil when out is empty.
func StartPerf(pid int, out string, logf func(format string, args ...any)) (*PerfRecorder, error) {
	if out == "" {
		return nil, nil
	}
	cmd := exec.Command("perf", "record", "-g", "-q", "-p", strconv.Itoa(pid), "-o", out)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start perf: %w", err)
	}
	r := &PerfRecorder{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(r.exited) }()
	logf("perf record -g -p %d -o %s", pid, out)
	return r, nil
}

// Stop ends the recording (SIGINT makes perf write its file) and waits for it.
func (r *PerfRecorder) Stop() {
	if r == nil {
		return
	}
	_ = r.cmd.Process.Signal(os.Interrupt)
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
}
