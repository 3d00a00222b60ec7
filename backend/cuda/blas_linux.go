//go:build linux && (amd64 || arm64)

package cuda

import (
	"fmt"
	"log/slog"
	"unsafe"
)

// cuBLAS and cuBLASLt enums used here.
const (
	cublasOpN          = 0
	cublasOpT          = 1
	cublasCompute32F   = 68 // CUBLAS_COMPUTE_32F: f32 accumulation, no TF32
	cublasGemmDefault  = -1 // CUBLAS_GEMM_DEFAULT
	ltDescTransA       = 3  // CUBLASLT_MATMUL_DESC_TRANSA
	ltDescTransB       = 4  // CUBLASLT_MATMUL_DESC_TRANSB
	ltPrefMaxWorkspace = 1  // CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES
	ltPrefMinAlignA    = 5  // CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES (then B, C, D: 6, 7, 8)
	// ltHeuristicSize is sizeof(cublasLtMatmulHeuristicResult_t): algo
	// (64 bytes), workspaceSize (size_t), state (int), wavesCount (float),
	// reserved int[4].
	ltHeuristicSize = 96
)

// blas runs GEMMs through cuBLASLt when it has an algorithm for the shape,
// else through cublasGemmEx.
type blas struct {
	lt, cb   *blasLib
	ltHandle uintptr
	cbHandle uintptr
	ws       uintptr // cuBLASLt workspace
	wsSize   int
	plans    map[ltKey]*ltPlan
	alpha    [2]float32 // host scalars for the call (alpha, beta)
	warned   bool       // a cuBLASLt failure was logged
}

// blasLib is one of the two libraries' entry points.
type blasLib struct {
	path    string
	version string

	// cuBLASLt
	create, destroy, getVersion                         uintptr
	descCreate, descDestroy, descSetAttr                uintptr
	layoutCreate, layoutDestroy                         uintptr
	prefCreate, prefDestroy, prefSetAttr, heuristic, mm uintptr

	// cuBLAS
	setStream, gemmEx uintptr
}

// loadBLAS opens cuBLASLt and cuBLAS, each optional as long as one loads
// (cuBLAS next to the cuBLASLt found, so that the two match).
func loadBLAS() (lt, cb *blasLib, ltErr, cbErr error) {
	if r, err := openLibrary(libCUBLASLt, ""); err != nil {
		ltErr = err
	} else {
		l := &blasLib{path: r.path}
		ltErr = bindSymbols("libcublasLt", r.handle, []symbol{
			{dst: &l.create, names: []string{"cublasLtCreate"}},
			{dst: &l.destroy, names: []string{"cublasLtDestroy"}},
			{dst: &l.getVersion, names: []string{"cublasLtGetVersion"}},
			{dst: &l.descCreate, names: []string{"cublasLtMatmulDescCreate"}},
			{dst: &l.descDestroy, names: []string{"cublasLtMatmulDescDestroy"}},
			{dst: &l.descSetAttr, names: []string{"cublasLtMatmulDescSetAttribute"}},
			{dst: &l.layoutCreate, names: []string{"cublasLtMatrixLayoutCreate"}},
			{dst: &l.layoutDestroy, names: []string{"cublasLtMatrixLayoutDestroy"}},
			{dst: &l.prefCreate, names: []string{"cublasLtMatmulPreferenceCreate"}},
			{dst: &l.prefDestroy, names: []string{"cublasLtMatmulPreferenceDestroy"}},
			{dst: &l.prefSetAttr, names: []string{"cublasLtMatmulPreferenceSetAttribute"}},
			{dst: &l.heuristic, names: []string{"cublasLtMatmulAlgoGetHeuristic"}},
			{dst: &l.mm, names: []string{"cublasLtMatmul"}},
		})
		if ltErr == nil {
			v := int(ccallPtr(l.getVersion))
			l.version = fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
			lt = l
		}
	}
	preferDir := ""
	if lt != nil {
		preferDir = dirOf(lt.path)
	}
	r, err := openLibrary(libCUBLAS, preferDir)
	if err != nil {
		return lt, nil, ltErr, err
	}
	c := &blasLib{path: r.path}
	cbErr = bindSymbols("libcublas", r.handle, []symbol{
		{dst: &c.create, names: []string{"cublasCreate_v2"}},
		{dst: &c.destroy, names: []string{"cublasDestroy_v2"}},
		{dst: &c.getVersion, names: []string{"cublasGetVersion_v2"}},
		{dst: &c.setStream, names: []string{"cublasSetStream_v2"}},
		{dst: &c.gemmEx, names: []string{"cublasGemmEx"}},
	})
	if cbErr != nil {
		return lt, nil, ltErr, cbErr
	}
	return lt, c, ltErr, nil
}

func dirOf(p string) string {
	for i := len(p) - 1; i >= 0; i-- {
		if p[i] == '/' {
			return p[:i]
		}
	}
	return ""
}

// blasCheck turns a cublasStatus_t into an error.
func blasCheck(op string, code int32) error {
	if code == 0 {
		return nil
	}
	return &DriverError{Op: op, Code: int(code), Name: cublasStatusName(code)}
}

// cublasStatusName names cublasStatus_t values (the same in cuBLASLt).
func cublasStatusName(code int32) string {
	switch code {
	case 1:
		return "CUBLAS_STATUS_NOT_INITIALIZED"
	case 3:
		return "CUBLAS_STATUS_ALLOC_FAILED"
	case 7:
		return "CUBLAS_STATUS_INVALID_VALUE"
	case 8:
		return "CUBLAS_STATUS_ARCH_MISMATCH"
	case 11:
		return "CUBLAS_STATUS_MAPPING_ERROR"
	case 13:
		return "CUBLAS_STATUS_EXECUTION_FAILED"
	case 14:
		return "CUBLAS_STATUS_INTERNAL_ERROR"
	case 15:
		return "CUBLAS_STATUS_NOT_SUPPORTED"
	case 16:
		return "CUBLAS_STATUS_LICENSE_ERROR"
	}
	return fmt.Sprintf("cublasStatus %d", code)
}

// newBLAS creates the handles and the cuBLASLt workspace on the device.
func newBLAS(lt, cb *blasLib, c *cudaDriver, wsSize int) (*blas, error) {
	b := &blas{lt: lt, cb: cb, plans: map[ltKey]*ltPlan{}}
	if lt != nil {
		if err := blasCheck("cublasLtCreate", ccall(lt.create, uintptr(unsafe.Pointer(&b.ltHandle)))); err != nil {
			return nil, err
		}
		if wsSize > 0 {
			ws, err := c.alloc(wsSize)
			if err != nil {
				b.close(c)
				return nil, fmt.Errorf("cuda: cuBLASLt workspace: %w", err)
			}
			b.ws, b.wsSize = ws, wsSize
		}
	}
	if cb != nil {
		if err := blasCheck("cublasCreate_v2", ccall(cb.create, uintptr(unsafe.Pointer(&b.cbHandle)))); err != nil {
			b.close(c)
			return nil, err
		}
		var v int32
		if ccall(cb.getVersion, b.cbHandle, uintptr(unsafe.Pointer(&v))) == 0 {
			cb.version = fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
		}
		if err := blasCheck("cublasSetStream_v2", ccall(cb.setStream, b.cbHandle, c.stream)); err != nil {
			b.close(c)
			return nil, err
		}
	}
	return b, nil
}

func (b *blas) name() string {
	if b.lt != nil {
		return "cublasLt"
	}
	return "cublas"
}

func (b *blas) close(c *cudaDriver) error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	for _, p := range b.plans {
		p.destroy(b.lt)
	}
	clear(b.plans)
	if b.ltHandle != 0 {
		keep(blasCheck("cublasLtDestroy", ccall(b.lt.destroy, b.ltHandle)))
		b.ltHandle = 0
	}
	if b.cbHandle != 0 {
		keep(blasCheck("cublasDestroy_v2", ccall(b.cb.destroy, b.cbHandle)))
		b.cbHandle = 0
	}
	if b.ws != 0 {
		keep(c.free(b.ws))
		b.ws = 0
	}
	return first
}

// ltKey identifies a GEMM shape: one matmul descriptor, three layouts and a
// heuristic algorithm are made per key and reused.
type ltKey struct {
	transA, transB      bool
	m, n, k             int
	lda, ldb, ldc       int
	aType, bType, cType DType
	align               [3]uint32 // of the A, B and C pointers, up to 256 bytes
}

// ptrAlign is the largest power of two up to 256 dividing p: the alignment
// cuBLASLt is told the matrix has (it assumes 256 unless told, and views
// into a flat parameter buffer are often less aligned).
func ptrAlign(p uintptr) uint32 {
	a := uint32(256)
	for a > 1 && p%uintptr(a) != 0 {
		a /= 2
	}
	return a
}

// ltPlan is a key's descriptors and algorithm; ok is false when cuBLASLt
// had no algorithm for it (then cuBLAS runs it).
type ltPlan struct {
	op, la, lb, lc uintptr
	algo           [ltHeuristicSize]byte // the whole heuristic result; algo is its first 64 bytes
	ok             bool
}

func (p *ltPlan) destroy(lt *blasLib) {
	if lt == nil {
		return
	}
	for _, l := range []uintptr{p.la, p.lb, p.lc} {
		if l != 0 {
			ccall(lt.layoutDestroy, l)
		}
	}
	if p.op != 0 {
		ccall(lt.descDestroy, p.op)
	}
}

func opOf(t bool) int32 {
	if t {
		return cublasOpT
	}
	return cublasOpN
}

// plan returns the cuBLASLt plan for g, making it on first use.
func (b *blas) plan(g *gemmArgs) (*ltPlan, error) {
	key := ltKey{g.transA, g.transB, g.m, g.n, g.k, g.lda, g.ldb, g.ldc, g.aType, g.bType, g.cType,
		[3]uint32{ptrAlign(g.a), ptrAlign(g.b), ptrAlign(g.c)}}
	if p := b.plans[key]; p != nil {
		return p, nil
	}
	lt := b.lt
	p := &ltPlan{}
	fail := func(err error) (*ltPlan, error) {
		p.destroy(lt)
		return nil, err
	}
	if err := blasCheck("cublasLtMatmulDescCreate", ccall(lt.descCreate, uintptr(unsafe.Pointer(&p.op)), cublasCompute32F, 0 /* CUDA_R_32F scale */)); err != nil {
		return fail(err)
	}
	ta, tb := opOf(g.transA), opOf(g.transB)
	if err := blasCheck("cublasLtMatmulDescSetAttribute(TRANSA)", ccall(lt.descSetAttr, p.op, ltDescTransA, uintptr(unsafe.Pointer(&ta)), 4)); err != nil {
		return fail(err)
	}
	if err := blasCheck("cublasLtMatmulDescSetAttribute(TRANSB)", ccall(lt.descSetAttr, p.op, ltDescTransB, uintptr(unsafe.Pointer(&tb)), 4)); err != nil {
		return fail(err)
	}
	// Column-major layouts of the stored matrices: A is m×k, or k×m when
	// transposed; B is k×n, or n×k.
	ar, ac := g.m, g.k
	if g.transA {
		ar, ac = g.k, g.m
	}
	br, bc := g.k, g.n
	if g.transB {
		br, bc = g.n, g.k
	}
	for _, l := range []struct {
		dst        *uintptr
		t          DType
		rows, cols int
		ld         int
	}{{&p.la, g.aType, ar, ac, g.lda}, {&p.lb, g.bType, br, bc, g.ldb}, {&p.lc, g.cType, g.m, g.n, g.ldc}} {
		if err := blasCheck("cublasLtMatrixLayoutCreate", ccall(lt.layoutCreate, uintptr(unsafe.Pointer(l.dst)), uintptr(l.t.cudaDataType()),
			uintptr(l.rows), uintptr(l.cols), uintptr(l.ld))); err != nil {
			return fail(err)
		}
	}
	var pref uintptr
	if err := blasCheck("cublasLtMatmulPreferenceCreate", ccall(lt.prefCreate, uintptr(unsafe.Pointer(&pref)))); err != nil {
		return fail(err)
	}
	defer ccall(lt.prefDestroy, pref)
	ws := uint64(b.wsSize)
	if err := blasCheck("cublasLtMatmulPreferenceSetAttribute", ccall(lt.prefSetAttr, pref, ltPrefMaxWorkspace, uintptr(unsafe.Pointer(&ws)), 8)); err != nil {
		return fail(err)
	}
	// Only algorithms that work at the pointers' alignment (C is also D).
	align := [4]uint32{key.align[0], key.align[1], key.align[2], key.align[2]}
	for i := range align {
		if err := blasCheck("cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT)", ccall(lt.prefSetAttr, pref, uintptr(ltPrefMinAlignA+i), uintptr(unsafe.Pointer(&align[i])), 4)); err != nil {
			return fail(err)
		}
	}
	var count int32
	code := ccall(lt.heuristic, b.ltHandle, p.op, p.la, p.lb, p.lc, p.lc, pref, 1, uintptr(unsafe.Pointer(&p.algo[0])), uintptr(unsafe.Pointer(&count)))
	p.ok = code == 0 && count > 0
	if !p.ok {
		slog.Debug("cuda: no cuBLASLt algorithm; using cuBLAS", "m", g.m, "n", g.n, "k", g.k, "status", code)
	}
	b.plans[key] = p
	return p, nil
}

// gemm runs g on stream.
func (b *blas) gemm(g *gemmArgs, stream uintptr) error {
	b.alpha = [2]float32{g.alpha, g.beta}
	if b.lt != nil {
		p, err := b.plan(g)
		if err != nil {
			return err
		}
		if p.ok {
			err := blasCheck("cublasLtMatmul", ccall(b.lt.mm, b.ltHandle, p.op,
				uintptr(unsafe.Pointer(&b.alpha[0])), g.a, p.la, g.b, p.lb,
				uintptr(unsafe.Pointer(&b.alpha[1])), g.c, p.lc, g.c, p.lc,
				uintptr(unsafe.Pointer(&p.algo[0])), b.ws, uintptr(b.wsSize), stream))
			if err == nil || b.cb == nil {
				return err
			}
			// The heuristic assumes 256-byte aligned matrices; a view may be
			// less aligned. cuBLAS takes any alignment.
			if !b.warned {
				b.warned = true
				slog.Warn("cuda: cuBLASLt rejected a GEMM; running it (and others it rejects) through cuBLAS", "m", g.m, "n", g.n, "k", g.k, "err", err)
			}
		}
	}
	if b.cb == nil {
		return fmt.Errorf("cuda: cuBLASLt has no algorithm for a %d×%d×%d %v GEMM and cuBLAS is not loaded", g.m, g.n, g.k, g.aType)
	}
	return blasCheck("cublasGemmEx", ccall(b.cb.gemmEx, b.cbHandle,
		uintptr(opOf(g.transA)), uintptr(opOf(g.transB)),
		uintptr(g.m), uintptr(g.n), uintptr(g.k),
		uintptr(unsafe.Pointer(&b.alpha[0])),
		g.a, uintptr(g.aType.cudaDataType()), uintptr(g.lda),
		g.b, uintptr(g.bType.cudaDataType()), uintptr(g.ldb),
		uintptr(unsafe.Pointer(&b.alpha[1])),
		g.c, uintptr(g.cType.cudaDataType()), uintptr(g.ldc),
		cublasCompute32F, uintptr(^uint32(0)) /* CUBLAS_GEMM_DEFAULT = -1 */))
}
