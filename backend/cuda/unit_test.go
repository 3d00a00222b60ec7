package cuda

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

func TestCacheKey(t *testing.T) {
	base := cacheKey{source: "src", arch: 90, nvrtcVersion: [2]int{13, 0}, options: nvrtcOptions(90, false)}
	variants := map[string]cacheKey{
		"source":  {source: "src2", arch: 90, nvrtcVersion: [2]int{13, 0}, options: base.options},
		"arch":    {source: "src", arch: 80, nvrtcVersion: [2]int{13, 0}, options: base.options},
		"nvrtc":   {source: "src", arch: 90, nvrtcVersion: [2]int{13, 1}, options: base.options},
		"options": {source: "src", arch: 90, nvrtcVersion: [2]int{13, 0}, options: nvrtcOptions(90, true)},
	}
	seen := map[string]string{base.sum(): "base", base.fileName(): "base"}
	for name, k := range variants {
		for _, s := range []string{k.sum(), k.fileName()} {
			if other, ok := seen[s]; ok {
				t.Errorf("key differing in %s collides with %s: %s", name, other, s)
			}
			seen[s] = name
		}
	}
	if base.sum() != (cacheKey{source: "src", arch: 90, nvrtcVersion: [2]int{13, 0}, options: nvrtcOptions(90, false)}).sum() {
		t.Error("equal keys hash differently")
	}
	if fn := base.fileName(); !strings.HasPrefix(fn, "mai-kernels-sm90-nvrtc13.0-") || !strings.HasSuffix(fn, ".cubin") {
		t.Errorf("file name %q", fn)
	}
	// The embedded source is part of the key: a real source gives a stable key.
	src, err := kernelSource()
	if err != nil {
		t.Fatal(err)
	}
	k := cacheKey{source: src, arch: 90, nvrtcVersion: [2]int{13, 0}, options: nvrtcOptions(90, false)}
	if k.sum() == base.sum() {
		t.Error("the kernel source does not change the key")
	}
}

func TestCacheStoreLoad(t *testing.T) {
	dir := t.TempDir()
	k := cacheKey{source: "s", arch: 90, nvrtcVersion: [2]int{13, 0}}
	cubin := []byte("\x7fELF fake cubin")
	if _, ok := loadCached(dir, k); ok {
		t.Fatal("empty cache hit")
	}
	if err := storeCached(dir, k, cubin); err != nil {
		t.Fatal(err)
	}
	got, ok := loadCached(dir, k)
	if !ok || string(got) != string(cubin) {
		t.Fatalf("load = %q, %v", got, ok)
	}
	other := k
	other.arch = 80
	if _, ok := loadCached(dir, other); ok {
		t.Error("another key hit")
	}
	// Damage: truncation, a flipped byte, a file stored under another key.
	path := filepath.Join(dir, k.fileName())
	data, _ := os.ReadFile(path)
	for name, bad := range map[string][]byte{
		"truncated": data[:len(data)-3],
		"flipped":   append(slices.Clone(data[:len(data)-1]), data[len(data)-1]^1),
		"foreign":   encodeCached(other, cubin),
		"garbage":   []byte("hello"),
	} {
		if err := os.WriteFile(path, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, ok := loadCached(dir, k); ok {
			t.Errorf("%s cache file accepted", name)
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
	if err := storeCached("", k, cubin); err != nil {
		t.Errorf("caching off: %v", err)
	}
}

func TestCacheDir(t *testing.T) {
	user := func() (string, error) { return "/home/u/.cache", nil }
	for _, tc := range []struct{ env, want string }{
		{"", "/home/u/.cache/mai/cuda"},
		{"/tmp/k", "/tmp/k"},
		{"off", ""},
		{"OFF", ""},
	} {
		got := cacheDir(func(string) string { return tc.env }, user)
		if got != tc.want {
			t.Errorf("%s=%q: got %q, want %q", CacheEnv, tc.env, got, tc.want)
		}
	}
	if got := cacheDir(func(string) string { return "" }, func() (string, error) { return "", errors.New("no home") }); got != "" {
		t.Errorf("no user cache folder: got %q", got)
	}
}

func TestNVRTCOptions(t *testing.T) {
	o := nvrtcOptions(90, false)
	want := []string{"--gpu-architecture=sm_90", "--std=c++17", "-DMAI_NVRTC=1"}
	if !slices.Equal(o, want) {
		t.Errorf("options %q, want %q", o, want)
	}
	for _, x := range o {
		if strings.Contains(x, "fast-math") || strings.Contains(x, "compute_") {
			t.Errorf("option %q: kernels compile to a CUBIN without fast math", x)
		}
	}
	if o := nvrtcOptions(120, true); !slices.Contains(o, "--generate-line-info") || o[0] != "--gpu-architecture=sm_120" {
		t.Errorf("line info options %q", o)
	}
}

func TestPickArch(t *testing.T) {
	sup := []int{75, 80, 86, 87, 89, 90, 100, 120}
	for _, tc := range []struct {
		dev, want int
		err       bool
	}{
		{90, 90, false},
		{86, 86, false},
		{88, 87, false}, // an unknown minor: the newest of the major below it
		{121, 120, false},
		{70, 0, true}, // Volta with an NVRTC that dropped it
		{130, 0, true},
	} {
		got, err := pickArch(tc.dev, sup)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("pickArch(%d) = %d, %v; want %d (error %v)", tc.dev, got, err, tc.want, tc.err)
		}
	}
	if got, err := pickArch(90, nil); got != 90 || err != nil {
		t.Errorf("unknown support list: %d, %v", got, err)
	}
}

func TestParseKernels(t *testing.T) {
	src := `
template <typename T> MAI_DEV void helper(T *x) {}
extern "C" __global__ void k1(float *out, const bf16_t *__restrict__ in, i64 n, int flag, float s, double d, const int *ids) { }
extern "C" __global__ void __launch_bounds__(256) k2() {}
extern "C"  __global__  void k3(unsigned int u,
	long long big) {}
`
	sigs, err := parseKernels(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(sigs) != 3 {
		t.Fatalf("got %d kernels", len(sigs))
	}
	if want := []paramKind{kPtr, kPtr, kI64, kI32, kF32, kF64, kPtr}; sigs[0].name != "k1" || !slices.Equal(sigs[0].kinds, want) {
		t.Errorf("k1: %s %v, want %v", sigs[0].name, sigs[0].kinds, want)
	}
	if sigs[0].types[1] != "const bf16_t *__restrict__" {
		t.Errorf("k1 type 1 = %q", sigs[0].types[1])
	}
	if sigs[1].name != "k2" || len(sigs[1].kinds) != 0 {
		t.Errorf("k2: %+v", sigs[1])
	}
	if !slices.Equal(sigs[2].kinds, []paramKind{kI32, kI64}) {
		t.Errorf("k3: %v", sigs[2].kinds)
	}
	for _, bad := range []string{
		`extern "C" __global__ void k(struct S s) {}`,
		`extern "C" __global__ void k(float) {}`,
		`extern "C" __global__ void k(int a) {} extern "C" __global__ void k(int b) {}`,
	} {
		if _, err := parseKernels(bad); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

// TestEmbeddedKernels parses the real sources: every kernel the Go side
// launches exists, and every exported kernel is launched by the Go side.
func TestEmbeddedKernels(t *testing.T) {
	table, err := kernelTable()
	if err != nil {
		t.Fatal(err)
	}
	goSrc := ""
	for _, f := range []string{"ops.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		goSrc += string(b)
	}
	for name := range table {
		base := strings.TrimSuffix(strings.TrimSuffix(name, "_f32"), "_bf16")
		if !strings.Contains(goSrc, `"`+name+`"`) && !strings.Contains(goSrc, `variant("`+base+`")`) {
			t.Errorf("kernel %s is never launched", name)
		}
	}
	for _, want := range []string{"attn_fwd_bf16", "xent_fwd_f32", "rmsnorm_bwd_bf16", "adamw_f32", "cast_f32_bf16", "reduce_final", "embedding_bwd_f32"} {
		if table[want] == nil {
			t.Errorf("kernel %s missing from the sources", want)
		}
	}
	// Each variant pair has the same parameter kinds.
	for name, s := range table {
		if base, ok := strings.CutSuffix(name, "_f32"); ok {
			if b := table[base+"_bf16"]; b != nil && !slices.Equal(b.kinds, s.kinds) {
				t.Errorf("%s and %s_bf16 differ: %v vs %v", name, base, s.kinds, b.kinds)
			}
		}
	}
}

func TestParamPack(t *testing.T) {
	sig := &kernelSig{name: "k", kinds: []paramKind{kPtr, kI32, kF32, kI64, kF64}, types: []string{"float *", "int", "float", "i64", "double"}}
	var pb paramBlock
	p, err := pb.pack(sig, []arg{argPtr(0xdeadbee0), argI32(-7), argF32(1.5), argI64(-1 << 40), argF64(math.Pi)})
	if err != nil {
		t.Fatal(err)
	}
	ptrs := (*[5]unsafe.Pointer)(p)
	if got := *(*uint64)(ptrs[0]); got != 0xdeadbee0 {
		t.Errorf("pointer %#x", got)
	}
	if got := *(*int32)(ptrs[1]); got != -7 {
		t.Errorf("int %d", got)
	}
	if got := *(*float32)(ptrs[2]); got != 1.5 {
		t.Errorf("float %v", got)
	}
	if got := *(*int64)(ptrs[3]); got != -1<<40 {
		t.Errorf("i64 %d", got)
	}
	if got := *(*float64)(ptrs[4]); got != math.Pi {
		t.Errorf("double %v", got)
	}
	for i := range 5 {
		if ptrs[i] != unsafe.Pointer(&pb.vals[i]) {
			t.Errorf("kernelParams[%d] does not point into the pinned block", i)
		}
	}
	if _, err := pb.pack(sig, []arg{argPtr(1)}); err == nil || !strings.Contains(err.Error(), "takes 5 arguments") {
		t.Errorf("short argument list: %v", err)
	}
	if _, err := pb.pack(sig, []arg{argPtr(1), argF32(1), argF32(1), argI64(1), argF64(1)}); err == nil || !strings.Contains(err.Error(), "argument 1 (int) is int, got float") {
		t.Errorf("wrong kind: %v", err)
	}
	if p, err := pb.pack(&kernelSig{name: "none"}, nil); p != nil || err != nil {
		t.Errorf("no parameters: %v %v", p, err)
	}
	if math.MaxInt > math.MaxInt32 {
		big := math.MaxInt32
		big++
		if _, err := argInt("n", big); err == nil {
			t.Error("argInt accepted 2^31")
		}
	}
}

func TestClassSize(t *testing.T) {
	for _, tc := range []struct{ n, want int }{
		{1, 512}, {512, 512}, {513, 1024}, {4096, 4096}, {4097, 8192}, {1 << 20, 1 << 20},
		{1<<20 + 1, 2 << 20}, {5 << 20, 6 << 20}, {6 << 20, 6 << 20},
	} {
		if got := classSize(tc.n); got != tc.want {
			t.Errorf("classSize(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

func TestGroupIDs(t *testing.T) {
	ids := []int32{5, 2, 5, 0, 2, 5}
	order, start, seg := groupIDs(ids)
	if want := []int32{3, 1, 4, 0, 2, 5}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v (stable by id)", order, want)
	}
	if want := []int32{0, 1, 3, 6}; !slices.Equal(start, want) {
		t.Errorf("starts %v, want %v", start, want)
	}
	if want := []int32{0, 2, 5}; !slices.Equal(seg, want) {
		t.Errorf("ids %v, want %v", seg, want)
	}
}

func TestAdamChunks(t *testing.T) {
	segs := []Segment{{Off: 0, Len: adamChunk + 5, Decay: true}, {Off: adamChunk + 10, Len: 3}}
	got := adamChunks(segs)
	want := []int64{0, adamChunk, 1, adamChunk, 5, 1, adamChunk + 10, 3, 0}
	if !slices.Equal(got, want) {
		t.Errorf("chunks %v, want %v", got, want)
	}
}

// TestRowMajorGemmMapping checks the row-major to column-major mapping by
// running both through plain loops.
func TestRowMajorGemmMapping(t *testing.T) {
	const m, n, k = 3, 4, 5
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			lda, ldb, ldc := k+1, n+2, n+3
			if ta {
				lda = m + 1
			}
			if tb {
				ldb = k + 2
			}
			a := make([]float32, 16*16)
			b := make([]float32, 16*16)
			for i := range a {
				a[i] = float32(i%7) - 3
				b[i] = float32(i%5) - 2
			}
			at := func(i, p int) float32 { // op(A)[i,p] row-major
				if ta {
					return a[p*lda+i]
				}
				return a[i*lda+p]
			}
			bt := func(p, j int) float32 {
				if tb {
					return b[j*ldb+p]
				}
				return b[p*ldb+j]
			}
			want := make([]float32, m*ldc)
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					for p := 0; p < k; p++ {
						want[i*ldc+j] += at(i, p) * bt(p, j)
					}
				}
			}
			abuf := &Buffer{ptr: 1, dtype: F32}
			bbuf := &Buffer{ptr: 2, dtype: F32}
			g := rowMajorGemm(ta, tb, m, n, k, 1, abuf, lda, bbuf, ldb, 0, &Buffer{ptr: 3, dtype: F32}, ldc)
			mem := map[uintptr][]float32{1: a, 2: b}
			A, B := mem[g.a], mem[g.b]
			got := make([]float32, m*ldc)
			// Column-major cuBLAS semantics over the same memory.
			for j := 0; j < g.n; j++ {
				for i := 0; i < g.m; i++ {
					var s float32
					for p := 0; p < g.k; p++ {
						var x, y float32
						if g.transA {
							x = A[p+i*g.lda]
						} else {
							x = A[i+p*g.lda]
						}
						if g.transB {
							y = B[j+p*g.ldb]
						} else {
							y = B[p+j*g.ldb]
						}
						s += x * y
					}
					got[i+j*g.ldc] = s
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("transA=%v transB=%v: mapping gives %v, want %v", ta, tb, got, want)
			}
		}
	}
}

// fakeDriver is host memory behind the driver interface, for the pool and
// buffer plumbing (kernels are not run).
type fakeDriver struct {
	mem       map[uintptr][]byte
	next      uintptr
	limit     int // bytes; 0 means unlimited
	used      int
	allocs    int
	frees     int
	launches  []string
	functions map[uintptr]string
}

func newFakeDriver() *fakeDriver {
	return &fakeDriver{mem: map[uintptr][]byte{}, next: 1 << 20, functions: map[uintptr]string{}}
}

func (f *fakeDriver) alloc(n int) (uintptr, error) {
	if f.limit > 0 && f.used+n > f.limit {
		return 0, &DriverError{Op: "cuMemAlloc_v2", Code: 2, Name: "CUDA_ERROR_OUT_OF_MEMORY"}
	}
	p := f.next
	f.next += uintptr(n + 4096)
	f.mem[p] = make([]byte, n)
	f.used += n
	f.allocs++
	return p, nil
}

func (f *fakeDriver) free(p uintptr) error {
	b, ok := f.mem[p]
	if !ok {
		return errors.New("fake: bad free")
	}
	f.used -= len(b)
	delete(f.mem, p)
	f.frees++
	return nil
}

// at returns the bytes at device address p (inside some allocation).
func (f *fakeDriver) at(p uintptr, n int) []byte {
	for base, b := range f.mem {
		if p >= base && p+uintptr(n) <= base+uintptr(len(b)) {
			return b[p-base : p-base+uintptr(n)]
		}
	}
	panic("fake: address out of range")
}

func (f *fakeDriver) hostAlloc(n int) (unsafe.Pointer, error) {
	b := make([]byte, n)
	return unsafe.Pointer(&b[0]), nil
}
func (f *fakeDriver) hostFree(unsafe.Pointer) error { return nil }
func (f *fakeDriver) htod(dst uintptr, src unsafe.Pointer, n int) error {
	copy(f.at(dst, n), unsafe.Slice((*byte)(src), n))
	return nil
}
func (f *fakeDriver) dtoh(dst unsafe.Pointer, src uintptr, n int) error {
	copy(unsafe.Slice((*byte)(dst), n), f.at(src, n))
	return nil
}
func (f *fakeDriver) dtod(dst, src uintptr, n int) error {
	copy(f.at(dst, n), f.at(src, n))
	return nil
}
func (f *fakeDriver) memsetD32(dst uintptr, v uint32, n int) error {
	b := f.at(dst, 4*n)
	for i := 0; i < n; i++ {
		*(*uint32)(unsafe.Pointer(&b[4*i])) = v
	}
	return nil
}
func (f *fakeDriver) function(name string) (uintptr, error) {
	p := uintptr(len(f.functions) + 1)
	f.functions[p] = name
	return p, nil
}
func (f *fakeDriver) setMaxDynamicSmem(uintptr, int) error { return nil }
func (f *fakeDriver) launch(fn uintptr, grid, block [3]uint32, smem int, params unsafe.Pointer) error {
	f.launches = append(f.launches, f.functions[fn])
	return nil
}
func (f *fakeDriver) gemm(*gemmArgs) error           { return nil }
func (f *fakeDriver) sync() error                    { return nil }
func (f *fakeDriver) eventRecord(int) error          { return nil }
func (f *fakeDriver) eventElapsed() (float32, error) { return 0, nil }
func (f *fakeDriver) close() error                   { return nil }

func newFakeDevice(t *testing.T, f *fakeDriver) *Device {
	t.Helper()
	exec := newExecutor()
	d, err := newDevice(exec, f, DeviceInfo{Name: "fake", SMs: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestPoolReuse(t *testing.T) {
	f := newFakeDriver()
	d := newFakeDevice(t, f)
	// A "training step" allocating and freeing the same sizes: only the
	// first step reaches the driver.
	step := func() {
		var bufs []*Buffer
		for _, n := range []int{100, 1000, 1 << 18, 3 << 20} {
			b, err := d.Alloc(F32, n)
			if err != nil {
				t.Fatal(err)
			}
			bufs = append(bufs, b)
		}
		if err := d.Free(bufs...); err != nil {
			t.Fatal(err)
		}
	}
	step()
	first := f.allocs
	for range 5 {
		step()
	}
	if f.allocs != first {
		t.Errorf("driver allocations grew from %d to %d over repeated steps", first, f.allocs)
	}
	inUse, cached, _, _ := d.MemStats()
	if inUse != 0 || cached == 0 {
		t.Errorf("after the steps: in use %d, cached %d", inUse, cached)
	}
	if err := d.Trim(); err != nil {
		t.Fatal(err)
	}
	if len(f.mem) != 0 {
		t.Errorf("trim left %d driver blocks", len(f.mem))
	}
}

func TestPoolOutOfMemoryTrims(t *testing.T) {
	f := newFakeDriver()
	f.limit = 5 << 20
	d := newFakeDevice(t, f)
	a, err := d.Alloc(F32, 1<<20) // 4 MiB class
	if err != nil {
		t.Fatal(err)
	}
	d.Free(a)
	// 4 MiB cached + 2 MiB more would exceed the limit; the pool must give
	// its cache back and retry.
	b, err := d.Alloc(F32, 300<<10) // 2 MiB class
	if err != nil {
		t.Fatalf("allocation after trimming: %v", err)
	}
	d.Free(b)
	f.limit = 1
	d.Trim()
	if _, err := d.Alloc(F32, 10); !errors.Is(err, ErrOutOfMemory) {
		t.Errorf("out of memory error %v does not match ErrOutOfMemory", err)
	}
}

func TestBufferPlumbing(t *testing.T) {
	f := newFakeDriver()
	d := newFakeDevice(t, f)
	x := []float32{1, -2.5, 3.25, float32(math.Inf(1)), 1e-3}
	b, err := d.FromHost(F32, x)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float32, len(x))
	if err := d.Download(got, b); err != nil || !slices.Equal(got, x) {
		t.Fatalf("round trip %v, %v", got, err)
	}
	h, _ := d.FromHost(BF16, x)
	if err := d.Download(got, h); err != nil {
		t.Fatal(err)
	}
	for i := range x {
		if rel := math.Abs(float64(got[i]-x[i])) / math.Abs(float64(x[i])); rel > 1.0/256 && !math.IsInf(float64(x[i]), 0) {
			t.Errorf("bf16 round trip %v -> %v", x[i], got[i])
		}
	}
	v, err := b.View(1, 3)
	if err != nil {
		t.Fatal(err)
	}
	sub := make([]float32, 3)
	if err := d.Download(sub, v); err != nil || !slices.Equal(sub, x[1:4]) {
		t.Errorf("view download %v, %v", sub, err)
	}
	if _, err := b.View(3, 3); err == nil {
		t.Error("view past the end accepted")
	}
	if err := d.Free(v); err == nil {
		t.Error("freeing a view accepted")
	}
	if err := d.Zero(b); err != nil {
		t.Fatal(err)
	}
	d.Download(got, b)
	if slices.ContainsFunc(got, func(v float32) bool { return v != 0 }) {
		t.Errorf("zeroed buffer holds %v", got)
	}
	for name, err := range map[string]error{
		"length":     d.Upload(b, []float32{1}),
		"dtype":      d.Upload(b, []int32{1, 2, 3, 4, 5}),
		"host type":  d.Upload(b, []string{"x"}),
		"dl dtype":   d.Download(make([]int32, 5), b),
		"dl length":  d.Download(make([]float32, 4), b),
		"bad alloc":  func() error { _, err := d.Alloc(DType(99), 1); return err }(),
		"neg length": func() error { _, err := d.Alloc(F32, -1); return err }(),
	} {
		if err == nil {
			t.Errorf("%s: bad call accepted", name)
		}
	}
	d.Free(b, h)
	if err := d.Free(b); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("double free: %v", err)
	}
	if err := d.Zero(b); err == nil || !strings.Contains(err.Error(), "after Free") {
		t.Errorf("use after free: %v", err)
	}
}

// TestOpsValidate checks that ops reject bad arguments with a message
// naming the argument, before anything is launched.
func TestOpsValidate(t *testing.T) {
	f := newFakeDriver()
	d := newFakeDevice(t, f)
	mk := func(dt DType, n int) *Buffer {
		b, err := d.Alloc(dt, n)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	x32, x16, small := mk(F32, 64), mk(BF16, 64), mk(F32, 8)
	w, ids := mk(F32, 8), mk(I32, 8)
	other := newFakeDevice(t, newFakeDriver())
	foreign, _ := other.Alloc(F32, 64)
	for _, tc := range []struct {
		name, want string
		err        error
	}{
		{"mixed dtypes", "g is bf16 but the other activations are f32", d.SwiGLUForward(x32, x16, x32)},
		{"short", "u has 8 elements, needs 64", d.SwiGLUForward(x32, x32, small)},
		{"nil", "out is nil", d.GELUForward(nil, x32, true)},
		{"foreign", "x belongs to another device", d.GELUForward(x32, foreign, true)},
		{"weight dtype", "w is bf16, want f32", d.RMSNormForward(x32, nil, x32, x16, 8, 8, 1e-5)},
		{"targets dtype", "targets is f32, want i32", d.CrossEntropyForward(w, w, x32, w, 8, 8)},
		{"attn gqa", "H = 3 is not a multiple of KV = 2", d.AttentionForward(&Attn{B: 1, Tq: 2, Tk: 2, H: 3, KV: 2, D: 4, KStride: 16}, x32, w, x32, x32, x32)},
		{"attn d", "head dimension 512", d.AttentionForward(&Attn{B: 1, Tq: 1, Tk: 1, H: 1, KV: 1, D: 512, KStride: 512}, x32, w, x32, x32, x32)},
		{"rope rot", "rot = 3", d.RoPEForward(&RoPE{Heads: 1, D: 4, Rot: 3, Cos: w, Sin: w}, x32, x32, ids)},
		{"rope in place", "same memory", d.RoPEForward(&RoPE{Heads: 1, D: 4, Rot: 4, Cos: w, Sin: w}, x32, x32, ids)},
		{"gemm ld", "lda = 2 is below", d.Gemm(false, false, 4, 4, 4, 1, x32, 2, x32, 4, 0, x32, 4)},
		{"gemm types", "f32 inputs need an f32 c", d.Gemm(false, false, 4, 4, 4, 1, x32, 4, x32, 4, 0, x16, 4)},
		{"gemm short", "c has 8 elements, needs 16", d.Gemm(false, false, 4, 4, 4, 1, x32, 4, x32, 4, 0, small, 4)},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, tc.err, tc.want)
		}
	}
	if len(f.launches) != 0 {
		t.Errorf("rejected calls launched %v", f.launches)
	}
	if _, err := d.NewEmbedIndex([]int32{1, 9}, 8); err == nil || !strings.Contains(err.Error(), "id 9 at position 1") {
		t.Errorf("embedding index with a bad id: %v", err)
	}
}

func TestClosedDevice(t *testing.T) {
	d := newFakeDevice(t, newFakeDriver())
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Alloc(F32, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("alloc on a closed device: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestExecutorPanics(t *testing.T) {
	e := newExecutor()
	defer e.close()
	err := e.do(func() error { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("panic became %v", err)
	}
	if err := e.do(func() error { return nil }); err != nil {
		t.Errorf("executor dead after a panic: %v", err)
	}
}
