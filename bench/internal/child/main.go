package child

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Progress writes a progress line to stderr; RESULT lines go to stdout.
func Progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// Main runs a benchmark under a context that ends on SIGINT or SIGTERM or after timeout, says
// how long the whole run took, and exits 1 when run fails.
func Main(timeout time.Duration, run func(context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	start := time.Now()
	err := run(ctx)
	cancel()
	stop()
	Progress("whole run took %s", time.Since(start).Round(100*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// Setup makes a run's work directory and finds the backflow binary to run: bin when set,
// otherwise one built into the work directory. cleanup removes the directory, unless keep.
func Setup(ctx context.Context, prefix string, keep bool, bin string) (work, binary string, cleanup func(), err error) {
	work, err = os.MkdirTemp("", prefix)
	if err != nil {
		return "", "", nil, fmt.Errorf("create work dir: %w", err)
	}
	cleanup = func() { os.RemoveAll(work) }
	if keep {
		Progress("keeping work dir %s", work)
		cleanup = func() {}
	}
	if bin == "" {
		if bin, err = Build(ctx, work, Progress); err != nil {
			cleanup()
			return "", "", nil, err
		}
	}
	return work, bin, cleanup, nil
}
