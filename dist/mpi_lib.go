//go:build (darwin || freebsd || linux || netbsd) && !android

package dist

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/ebitengine/purego"
)

// MPI constants shared by Open MPI and MPICH.
const (
	mpiSuccess        = 0
	mpiThreadSingle   = 0
	mpiThreadFunneled = 1
	mpiThreadSerial   = 2
	mpiThreadMultiple = 3
	mpiUndefined      = -32766
	mpiMaxErrorString = 1024 // Open MPI 256, MPICH 1024: the larger
	mpiMaxLibVersion  = 8192 // Open MPI 256, MPICH 8192
)

// handleRef names one MPI handle: either an exported symbol whose address
// is the handle (Open MPI) or a constant (MPICH's integer handles).
type handleRef struct {
	symbol string
	value  uintptr
}

func sym(name string) handleRef    { return handleRef{symbol: name} }
func val(v uintptr) handleRef      { return handleRef{value: v} }
func (h handleRef) String() string { return h.symbol }

// mpiImpl is one MPI implementation's ABI: how its library is named, how
// to recognize it once loaded, and what its handles are.
type mpiImpl struct {
	name     string
	sonames  []string // library file names, most specific first
	identify string   // a symbol only this implementation exports
	// handleSize is sizeof(MPI_Comm): 8 for Open MPI's pointers, 4 for
	// MPICH's ints.
	handleSize int
	inPlace    uintptr
	commWorld  handleRef
	float      handleRef
	double     handleRef
	byte_      handleRef
	int_       handleRef
	opSum      handleRef
	opMax      handleRef
	opMin      handleRef
	errReturn  handleRef
}

// mpiImpls is the per-implementation table. Open MPI is tested here
// (4.1); the MPICH entry (MPICH, Intel MPI, MVAPICH, Cray MPICH share its
// ABI) follows mpi.h but has not been run by this project's tests.
var mpiImpls = []*mpiImpl{
	{
		name:       "Open MPI",
		sonames:    []string{"libmpi.so.40", "libmpi.so", "libmpi.40.dylib", "libmpi.dylib"},
		identify:   "ompi_mpi_comm_world",
		handleSize: 8,
		inPlace:    1,
		commWorld:  sym("ompi_mpi_comm_world"),
		float:      sym("ompi_mpi_float"),
		double:     sym("ompi_mpi_double"),
		byte_:      sym("ompi_mpi_byte"),
		int_:       sym("ompi_mpi_int"),
		opSum:      sym("ompi_mpi_op_sum"),
		opMax:      sym("ompi_mpi_op_max"),
		opMin:      sym("ompi_mpi_op_min"),
		errReturn:  sym("ompi_mpi_errors_return"),
	},
	{
		name:       "MPICH",
		sonames:    []string{"libmpi.so.12", "libmpich.so.12", "libmpi.12.dylib"},
		identify:   "MPIR_Err_return_comm",
		handleSize: 4,
		inPlace:    ^uintptr(0), // (void *) -1
		commWorld:  val(0x44000000),
		float:      val(0x4c00040a),
		double:     val(0x4c00080b),
		byte_:      val(0x4c00010d),
		int_:       val(0x4c000405),
		opSum:      val(0x58000003),
		opMax:      val(0x58000001),
		opMin:      val(0x58000002),
		errReturn:  val(0x54000001),
	},
}

// mpiLib is a loaded MPI library: its functions and resolved handles.
type mpiLib struct {
	impl *mpiImpl
	path string

	commWorld, float, double, byte_, int_ uintptr
	opSum, opMax, opMin, errReturn        uintptr

	initThread, initialized, finalized, finalize, abort uintptr
	commRank, commSize, commSplit, commFree             uintptr
	commSetErrhandler, errorString, libVersion          uintptr
	allreduce, reduceScatterBlock, allgather, bcast     uintptr
	alltoallv, barrier                                  uintptr
}

// searchDirs lists the folders tried for libmpi after the loader's own
// search, in order.
func searchDirs(getenv func(string) string) []string {
	var dirs []string
	for _, env := range []string{"MPI_HOME", "MPI_ROOT", "OMPI_HOME", "I_MPI_ROOT", "MPICH_HOME"} {
		if d := getenv(env); d != "" {
			dirs = append(dirs, filepath.Join(d, "lib"), filepath.Join(d, "lib64"), filepath.Join(d, "lib", "release"))
		}
	}
	arch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "ppc64le": "powerpc64le", "riscv64": "riscv64", "s390x": "s390x", "loong64": "loongarch64"}[runtime.GOARCH]
	if arch != "" {
		dirs = append(dirs,
			"/usr/lib/"+arch+"-linux-gnu/openmpi/lib",
			"/usr/lib/"+arch+"-linux-gnu/mpich/lib",
			"/usr/lib/"+arch+"-linux-gnu")
	}
	return append(dirs,
		"/usr/lib64/openmpi/lib", // Fedora, RHEL
		"/usr/lib64/mpich/lib",
		"/usr/local/mpi/lib", // NVIDIA NGC containers
		"/opt/hpcx/ompi/lib", // NVIDIA HPC-X
		"/opt/openmpi/lib",
		"/opt/amazon/openmpi/lib", // AWS EFA images
		"/usr/local/lib",
		"/opt/homebrew/lib",
	)
}

// candidates lists the library paths tried, in order: only $MAI_MPI_LIB
// when it is set, else the loader's search and the usual folders.
func candidates(getenv func(string) string) []string {
	if p := getenv(LibraryEnv); p != "" {
		return []string{p}
	}
	var out []string
	var sonames []string
	for _, im := range mpiImpls {
		sonames = append(sonames, im.sonames...)
	}
	// Bare sonames first: the loader's own search (LD_LIBRARY_PATH, the
	// ld.so cache) is what the launcher's environment set up.
	for _, s := range sonames {
		if strings.Contains(s, ".so.") {
			out = append(out, s)
		}
	}
	for _, d := range searchDirs(getenv) {
		for _, s := range sonames {
			out = append(out, filepath.Join(d, s))
		}
	}
	return out
}

// loadMPI opens the first libmpi among paths and binds it.
func loadMPI(paths []string) (*mpiLib, error) {
	var tried []string
	for _, p := range paths {
		if filepath.IsAbs(p) && len(paths) > 1 {
			if _, err := os.Stat(p); err != nil {
				continue
			}
		}
		h, err := purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			tried = append(tried, p+": "+err.Error())
			continue
		}
		lib, err := bindMPI(h, p)
		if err != nil {
			return nil, err
		}
		return lib, nil
	}
	msg := "dist: no MPI library found (looked for libmpi.so.40 of Open MPI and libmpi.so.12 of MPICH through the loader path, $MPI_HOME/lib and the usual install folders)"
	if len(paths) == 1 {
		msg = "dist: cannot open the MPI library " + paths[0]
	}
	if len(tried) > 0 {
		msg += "; failed to open: " + strings.Join(tried, "; ")
	}
	msg += ". Install Open MPI (Debian/Ubuntu: apt-get install -y openmpi-bin libopenmpi-dev; Fedora/RHEL: dnf install openmpi) or set $" + LibraryEnv + " to the path of libmpi"
	return nil, errors.New(msg)
}

func bindMPI(h uintptr, path string) (*mpiLib, error) {
	var impl *mpiImpl
	for _, im := range mpiImpls {
		if a, err := purego.Dlsym(h, im.identify); err == nil && a != 0 {
			impl = im
			break
		}
	}
	if impl == nil {
		return nil, fmt.Errorf("dist: %s is not a known MPI implementation (no symbol of Open MPI or MPICH found)", path)
	}
	lib := &mpiLib{impl: impl, path: path}
	var missing []string
	resolve := func(r handleRef) uintptr {
		if r.symbol == "" {
			return r.value
		}
		a, err := purego.Dlsym(h, r.symbol)
		if err != nil || a == 0 {
			missing = append(missing, r.symbol)
		}
		return a
	}
	fn := func(name string) uintptr {
		a, err := purego.Dlsym(h, name)
		if err != nil || a == 0 {
			missing = append(missing, name)
		}
		return a
	}
	lib.commWorld = resolve(impl.commWorld)
	lib.float = resolve(impl.float)
	lib.double = resolve(impl.double)
	lib.byte_ = resolve(impl.byte_)
	lib.int_ = resolve(impl.int_)
	lib.opSum = resolve(impl.opSum)
	lib.opMax = resolve(impl.opMax)
	lib.opMin = resolve(impl.opMin)
	lib.errReturn = resolve(impl.errReturn)
	lib.initThread = fn("MPI_Init_thread")
	lib.initialized = fn("MPI_Initialized")
	lib.finalized = fn("MPI_Finalized")
	lib.finalize = fn("MPI_Finalize")
	lib.abort = fn("MPI_Abort")
	lib.commRank = fn("MPI_Comm_rank")
	lib.commSize = fn("MPI_Comm_size")
	lib.commSplit = fn("MPI_Comm_split")
	lib.commFree = fn("MPI_Comm_free")
	lib.commSetErrhandler = fn("MPI_Comm_set_errhandler")
	lib.errorString = fn("MPI_Error_string")
	lib.libVersion = fn("MPI_Get_library_version")
	lib.allreduce = fn("MPI_Allreduce")
	lib.reduceScatterBlock = fn("MPI_Reduce_scatter_block")
	lib.allgather = fn("MPI_Allgather")
	lib.bcast = fn("MPI_Bcast")
	lib.alltoallv = fn("MPI_Alltoallv")
	lib.barrier = fn("MPI_Barrier")
	if len(missing) > 0 {
		return nil, fmt.Errorf("dist: %s (%s) lacks symbols: %s", path, impl.name, strings.Join(missing, ", "))
	}
	return lib, nil
}

// call invokes a C function of the MPI library and returns its int result.
// Pointers must be converted to uintptr in the argument list itself, so
// that go:uintptrescapes keeps their targets on the heap and alive.
//
//go:uintptrescapes
func (l *mpiLib) call(fn uintptr, args ...uintptr) int32 {
	r, _, _ := purego.SyscallN(fn, args...)
	return int32(r)
}

// version returns MPI_Get_library_version's text (callable before init).
func (l *mpiLib) version() string {
	buf := make([]byte, mpiMaxLibVersion)
	var n int32
	if l.call(l.libVersion, uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n))) != mpiSuccess {
		return ""
	}
	n = max(0, min(n, int32(len(buf))))
	s := strings.TrimRight(string(buf[:n]), "\x00\n ")
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// errText returns MPI_Error_string for code.
func (l *mpiLib) errText(code int32) string {
	buf := make([]byte, mpiMaxErrorString)
	var n int32
	if l.call(l.errorString, uintptr(code), uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n))) != mpiSuccess {
		return "unknown error"
	}
	n = max(0, min(n, int32(len(buf))))
	return strings.TrimRight(string(buf[:n]), "\x00")
}

func (l *mpiLib) check(fn string, rc int32) error {
	if rc == mpiSuccess {
		return nil
	}
	return &MPIError{Func: fn, Code: int(rc), Message: l.errText(rc)}
}

// The process's MPI state. MPI can be initialized once per process and
// never again after finalization, so this is process-wide by nature.
var mpiState mpiStateT

type mpiStateT struct {
	mu        sync.Mutex
	lib       *mpiLib
	refs      int // open world communicators
	finalized atomic.Bool
	worldMu   sync.Mutex // orders calls on the world communicator
	owner     *owner
	threads   int32 // thread level MPI provided
	worldSize int
	serial    sync.Mutex
	dog       *watchdog
}

// owner is the goroutine, locked to its OS thread, that initialized MPI.
// It finalizes MPI on that same thread, as the MPI standard asks, and runs
// every call when MPI provides only MPI_THREAD_FUNNELED.
type owner struct {
	work chan func()
	done chan struct{}
}

func startOwner() *owner {
	o := &owner{work: make(chan func()), done: make(chan struct{})}
	go func() {
		// Never unlocked: when this goroutine returns, its thread exits.
		runtime.LockOSThread()
		defer close(o.done)
		for f := range o.work {
			f()
		}
	}()
	return o
}

// do runs f on the owner thread and waits for it.
func (o *owner) do(f func()) {
	ch := make(chan struct{})
	o.work <- func() { f(); close(ch) }
	<-ch
}

func (o *owner) stop() {
	close(o.work)
	<-o.done
}

func logger() *slog.Logger { return slog.Default().With("pkg", "dist") }
