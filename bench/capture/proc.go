package main

import (
	"context"
	"os/exec"
	"time"

	"github.com/backflow-dev/backflow/bench/internal/child"
)

// The child-process helpers shared by the benchmark programs.
type proc = child.Proc

func startProc(name string, cmd *exec.Cmd, logPath string) (*proc, error) {
	return child.Start(name, cmd, logPath)
}

func buildBackflow(ctx context.Context, dir string) (string, error) {
	return child.Build(ctx, dir, progress)
}

func selfCPU() time.Duration { return child.SelfCPU() }

func procCPU(pid int) time.Duration { return child.ProcCPU(pid) }
