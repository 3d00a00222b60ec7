package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// SandboxOptions bounds what a code task's test may do. Zero values take the
// defaults shown.
type SandboxOptions struct {
	Timeout      time.Duration // wall time for the test run (10s)
	BuildTimeout time.Duration // wall time for compiling (2m)
	CPUSeconds   int           // RLIMIT_CPU of the test (the timeout, rounded up)
	MemoryBytes  int64         // RLIMIT_AS of the test (2 GiB)
	FileBytes    int64         // RLIMIT_FSIZE: largest file the test may write (16 MiB)
	Processes    int           // RLIMIT_NPROC for the sandbox uid, threads included (128)
	OutputBytes  int           // output kept from build and test (64 KiB)
	Workers      int           // samples built and run at once (GOMAXPROCS, at most 4)
	// GoCache is the build cache, kept apart from the user's
	// (default: the user cache folder's mai/eval-gocache).
	GoCache string
	// Go is the go command (default: "go" on PATH).
	Go string
	// UID is the first unprivileged uid (and gid) tests run as when this
	// process is root; worker i uses UID+i (default 64000).
	UID int
}

func (o *SandboxOptions) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.BuildTimeout <= 0 {
		o.BuildTimeout = 2 * time.Minute
	}
	if o.CPUSeconds <= 0 {
		o.CPUSeconds = int((o.Timeout + time.Second - 1) / time.Second)
	}
	if o.MemoryBytes <= 0 {
		o.MemoryBytes = 2 << 30
	}
	if o.FileBytes <= 0 {
		o.FileBytes = 16 << 20
	}
	if o.Processes <= 0 {
		o.Processes = 128
	}
	if o.OutputBytes <= 0 {
		o.OutputBytes = 64 << 10
	}
	if o.Workers <= 0 {
		o.Workers = min(runtime.GOMAXPROCS(0), 4)
	}
	if o.GoCache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			dir = os.TempDir()
		}
		o.GoCache = filepath.Join(dir, "mai", "eval-gocache")
	}
	if o.Go == "" {
		o.Go = "go"
	}
	if o.UID <= 0 {
		o.UID = 64000
	}
}

// Isolation describes how tests are confined on this machine.
type Isolation struct {
	// Level is "full" (root: chroot into the test's folder, unprivileged
	// uid, no network, own PID namespace), "userns" (not root: chroot and
	// no network inside a user namespace) or "limits" (resource limits and
	// timeouts only).
	Level   string
	Warning string // what is missing, for anything short of "full"
}

var (
	isoOnce sync.Once
	iso     Isolation
)

// SandboxIsolation probes (once) which isolation the sandbox can give here.
func SandboxIsolation() Isolation {
	isoOnce.Do(func() {
		if os.Geteuid() == 0 {
			if err := probeNamespaces(false); err == nil {
				iso = Isolation{Level: "full"}
				return
			} else {
				iso = Isolation{Level: "limits", Warning: fmt.Sprintf("cannot create namespaces (%v): code tests run with resource limits and timeouts only, and can reach the network and write where root can", err)}
				return
			}
		}
		if err := probeNamespaces(true); err == nil {
			iso = Isolation{Level: "userns", Warning: "not root: code tests run chrooted in a user namespace without network, but as your uid; run as root for a separate unprivileged uid"}
			return
		}
		iso = Isolation{Level: "limits", Warning: "not root and user namespaces are unavailable: code tests run with resource limits and timeouts only; they can reach the network and write wherever you can. Run as root (e.g. in a container) for isolation"}
	})
	return iso
}

func nsFlags(user bool) uintptr {
	f := uintptr(syscall.CLONE_NEWNET | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS)
	if user {
		f |= syscall.CLONE_NEWUSER
	}
	return f
}

func probeNamespaces(user bool) error {
	cmd := exec.Command("/bin/true")
	if _, err := os.Stat("/bin/true"); err != nil {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cmd = exec.Command(self)
		cmd.Env = []string{sandboxEnv + "=probe"}
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: nsFlags(user)}
	if user {
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	return cmd.Run()
}

// sandboxEnv names the environment variable that makes a re-executed copy of
// this binary set up the sandbox and exec the test (see sandboxInit).
const sandboxEnv = "MAI_EVAL_SANDBOX"

type sandboxSpec struct {
	Root   string   `json:"root"` // chroot, or "" for none
	UID    int      `json:"uid"`  // -1: keep
	Bin    string   `json:"bin"`
	Args   []string `json:"args"`
	Env    []string `json:"env"`
	CPU    uint64   `json:"cpu"`
	AS     uint64   `json:"as"`
	FSize  uint64   `json:"fsize"`
	NProc  uint64   `json:"nproc"`
	NoFile uint64   `json:"nofile"`
}

func init() {
	// A copy of the binary started by runSandboxed: set limits, confine
	// itself, then become the test. This runs before main and never returns.
	if v, ok := os.LookupEnv(sandboxEnv); ok {
		if v == "probe" {
			os.Exit(0)
		}
		err := sandboxInit(v)
		fmt.Fprintf(os.Stderr, "sandbox: %v\n", err)
		os.Exit(126)
	}
}

func sandboxInit(spec string) error {
	runtime.LockOSThread()
	var s sandboxSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		return err
	}
	for _, l := range []struct {
		res int
		v   uint64
	}{{syscall.RLIMIT_CPU, s.CPU}, {syscall.RLIMIT_AS, s.AS}, {syscall.RLIMIT_FSIZE, s.FSize},
		{rlimitNPROC, s.NProc}, {syscall.RLIMIT_NOFILE, s.NoFile}, {syscall.RLIMIT_CORE, 0}} {
		if l.v == 0 && l.res != syscall.RLIMIT_CORE {
			continue
		}
		lim := syscall.Rlimit{Cur: l.v, Max: l.v}
		if l.res == syscall.RLIMIT_CPU {
			lim.Max = l.v + 1 // SIGXCPU first, then SIGKILL
		}
		if err := syscall.Setrlimit(l.res, &lim); err != nil {
			return fmt.Errorf("setrlimit %d: %w", l.res, err)
		}
	}
	if s.Root != "" {
		if err := syscall.Chroot(s.Root); err != nil {
			return fmt.Errorf("chroot: %w", err)
		}
		if err := syscall.Chdir("/"); err != nil {
			return fmt.Errorf("chdir: %w", err)
		}
	}
	if s.UID >= 0 {
		if err := syscall.Setgroups(nil); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(s.UID); err != nil {
			return fmt.Errorf("setgid: %w", err)
		}
		if err := syscall.Setuid(s.UID); err != nil {
			return fmt.Errorf("setuid: %w", err)
		}
	}
	// No privileges can be gained past this point (no setuid binaries).
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0); e != 0 {
		return fmt.Errorf("prctl(no_new_privs): %w", e)
	}
	return syscall.Exec(s.Bin, append([]string{s.Bin}, s.Args...), s.Env)
}

const (
	rlimitNPROC     = 6 // RLIMIT_NPROC on Linux
	prSetNoNewPrivs = 38
)

// capWriter keeps the first n bytes written and counts the rest.
type capWriter struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	n       int
	dropped int
}

func (w *capWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	room := w.n - w.buf.Len()
	if room > 0 {
		w.buf.Write(p[:min(room, len(p))])
	}
	w.dropped += max(0, len(p)-max(room, 0))
	return len(p), nil
}

func (w *capWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.buf.String()
	if w.dropped > 0 {
		s += fmt.Sprintf("\n[%d more bytes of output dropped]", w.dropped)
	}
	return s
}

// runResult is the outcome of one build or test run.
type runResult struct {
	ok       bool
	timedOut bool
	output   string
}

// runGroup runs cmd in its own process group with a wall-time limit, killing
// the whole group when time is up.
func runGroup(ctx context.Context, cmd *exec.Cmd, timeout time.Duration, outCap int) (runResult, error) {
	out := &capWriter{n: outCap}
	cmd.Stdout, cmd.Stderr = out, out
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return runResult{}, err
	}
	pid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	res := runResult{}
	select {
	case err = <-done:
	case <-timer.C:
		res.timedOut = true
		syscall.Kill(-pid, syscall.SIGKILL)
		err = <-done
	case <-ctx.Done():
		syscall.Kill(-pid, syscall.SIGKILL)
		<-done
		return runResult{}, ctx.Err()
	}
	syscall.Kill(-pid, syscall.SIGKILL) // anything the process left behind in its group
	res.output = out.String()
	var ee *exec.ExitError
	switch {
	case err == nil:
		res.ok = !res.timedOut
	case errors.As(err, &ee) || errors.Is(err, exec.ErrWaitDelay):
	default:
		return res, err
	}
	return res, nil
}

// goEnv is the environment for the go command and the test: no module
// downloads, no toolchain switch, no cgo, a private cache.
func goEnv(o *SandboxOptions, dir string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + filepath.Join(dir, "home"),
		"TMPDIR=" + filepath.Join(dir, "tmp"),
		"GOCACHE=" + o.GoCache,
		"GOPATH=" + filepath.Join(dir, "gopath"),
		"GOMODCACHE=" + filepath.Join(dir, "gopath", "mod"),
		"GOPROXY=off", "GOFLAGS=-mod=mod", "GOTOOLCHAIN=local", "GOWORK=off", "GO111MODULE=on",
		"CGO_ENABLED=0", "GOENV=off", "GOTELEMETRY=off", "GONOSUMDB=*", "GOSUMDB=off",
	}
	if v := os.Getenv("GOROOT"); v != "" {
		env = append(env, "GOROOT="+v)
	}
	return env
}

// goTest compiles the package in dir into a test binary and runs it in the
// sandbox. slot picks the uid when running as root.
func goTest(ctx context.Context, o *SandboxOptions, dir string, slot int) (runResult, error) {
	for _, d := range []string{"home", "tmp", "gopath", "run", "run/tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return runResult{}, err
		}
	}
	if err := os.MkdirAll(o.GoCache, 0o755); err != nil {
		return runResult{}, fmt.Errorf("go cache: %w", err)
	}
	bin := filepath.Join(dir, "run", "test.bin")
	build := exec.Command(o.Go, "test", "-c", "-o", bin, ".")
	build.Dir = filepath.Join(dir, "src")
	build.Env = goEnv(o, dir)
	res, err := runGroup(ctx, build, o.BuildTimeout, o.OutputBytes)
	if err != nil {
		return res, fmt.Errorf("go test -c: %w", err)
	}
	if !res.ok {
		if res.timedOut {
			res.output = "build timed out\n" + res.output
		}
		res.output = "build failed:\n" + res.output
		return res, nil
	}
	return runTestBinary(ctx, o, dir, slot)
}

func runTestBinary(ctx context.Context, o *SandboxOptions, dir string, slot int) (runResult, error) {
	self, err := os.Executable()
	if err != nil {
		return runResult{}, fmt.Errorf("sandbox: %w", err)
	}
	runDir := filepath.Join(dir, "run")
	args := []string{"-test.count=1", "-test.timeout=" + o.Timeout.String(), "-test.v"}
	spec := sandboxSpec{UID: -1, Args: args, CPU: uint64(o.CPUSeconds), AS: uint64(o.MemoryBytes),
		FSize: uint64(o.FileBytes), NoFile: 256, NProc: uint64(o.Processes)}
	attr := &syscall.SysProcAttr{}
	lvl := SandboxIsolation().Level
	switch lvl {
	case "full":
		uid := o.UID + slot
		if err := chownTree(runDir, uid); err != nil {
			return runResult{}, err
		}
		spec.Root, spec.UID, spec.Bin = runDir, uid, "/test.bin"
		spec.Env = []string{"HOME=/", "TMPDIR=/tmp", "GOMAXPROCS=2", "PATH=/"}
		attr.Cloneflags = nsFlags(false)
	case "userns":
		spec.Root, spec.Bin = runDir, "/test.bin"
		spec.Env = []string{"HOME=/", "TMPDIR=/tmp", "GOMAXPROCS=2", "PATH=/"}
		spec.NProc = 0 // counted against your own uid: leave it alone
		attr.Cloneflags = nsFlags(true)
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	default:
		spec.Bin = filepath.Join(runDir, "test.bin")
		spec.Env = []string{"HOME=" + runDir, "TMPDIR=" + filepath.Join(runDir, "tmp"), "GOMAXPROCS=2"}
		spec.NProc = 0
	}
	js, _ := json.Marshal(spec)
	cmd := exec.Command(self)
	cmd.Env = []string{sandboxEnv + "=" + string(js)}
	cmd.Dir = runDir
	cmd.SysProcAttr = attr
	res, err := runGroup(ctx, cmd, o.Timeout, o.OutputBytes)
	if err != nil {
		return res, fmt.Errorf("sandbox: %w", err)
	}
	if res.timedOut {
		res.output = fmt.Sprintf("killed after %s (wall-time limit)\n", o.Timeout) + res.output
	}
	if strings.Contains(res.output, "sandbox: ") && !res.ok {
		slog.Debug("sandbox setup output", "output", res.output)
	}
	return res, nil
}

// chownTree gives the run folder to the sandbox uid so the test can write in
// it (and only there).
func chownTree(dir string, uid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, uid)
	})
}
