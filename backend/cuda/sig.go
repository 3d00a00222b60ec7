package cuda

import (
	"fmt"
	"math"
	"regexp"
	"strings"
	"unsafe"
)

// paramKind is how a kernel parameter is passed: its size and type class.
type paramKind uint8

// Parameter kinds of MAI's kernels.
const (
	kPtr paramKind = iota + 1 // any pointer (8 bytes)
	kI32                      // int (4 bytes)
	kF32                      // float (4 bytes)
	kI64                      // long long / i64 (8 bytes)
	kF64                      // double (8 bytes)
)

var paramKindNames = [...]string{kPtr: "pointer", kI32: "int", kF32: "float", kI64: "i64", kF64: "double"}

func (k paramKind) String() string {
	if int(k) < len(paramKindNames) && paramKindNames[k] != "" {
		return paramKindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

// kernelSig is one extern "C" __global__ function of the kernel source.
type kernelSig struct {
	name   string
	types  []string // each parameter's C type, e.g. "const float *"
	kinds  []paramKind
	params string // the parameter list as written
}

var kernelDecl = regexp.MustCompile(`extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s+)?([A-Za-z_]\w*)\s*\(([^)]*)\)`)

// parseKernels reads the signatures of every extern "C" __global__ function
// in src. Each parameter must be a pointer or one of int, unsigned, float,
// double, i64 and long long.
func parseKernels(src string) ([]kernelSig, error) {
	var out []kernelSig
	seen := map[string]bool{}
	for _, m := range kernelDecl.FindAllStringSubmatch(src, -1) {
		name, list := m[1], strings.TrimSpace(m[2])
		if seen[name] {
			return nil, fmt.Errorf("kernel %s declared twice", name)
		}
		seen[name] = true
		ks := kernelSig{name: name, params: list}
		if list != "" && list != "void" {
			for p := range strings.SplitSeq(list, ",") {
				typ, kind, err := parseParam(p)
				if err != nil {
					return nil, fmt.Errorf("kernel %s: %w", name, err)
				}
				ks.types = append(ks.types, typ)
				ks.kinds = append(ks.kinds, kind)
			}
		}
		if len(ks.kinds) > maxParams {
			return nil, fmt.Errorf("kernel %s has %d parameters, more than %d", name, len(ks.kinds), maxParams)
		}
		out = append(out, ks)
	}
	return out, nil
}

var paramName = regexp.MustCompile(`[A-Za-z_]\w*$`)

// parseParam splits "const float *__restrict__ x" into its type
// ("const float *__restrict__") and kind.
func parseParam(p string) (string, paramKind, error) {
	p = strings.TrimSpace(p)
	loc := paramName.FindStringIndex(p)
	if loc == nil || loc[0] == 0 {
		return "", 0, fmt.Errorf("parameter %q has no name", p)
	}
	typ := strings.TrimSpace(p[:loc[0]])
	if strings.Contains(typ, "*") {
		return typ, kPtr, nil
	}
	base := strings.Join(strings.Fields(strings.ReplaceAll(typ, "const", "")), " ")
	switch base {
	case "int", "unsigned", "unsigned int", "int32_t", "uint32_t":
		return typ, kI32, nil
	case "float":
		return typ, kF32, nil
	case "i64", "long long", "long long int", "int64_t", "size_t", "unsigned long long":
		return typ, kI64, nil
	case "double":
		return typ, kF64, nil
	}
	return "", 0, fmt.Errorf("parameter %q: type %q is not a pointer, int, float, double or i64", p, typ)
}

// maxParams bounds a kernel's parameter count (the packing block's size).
const maxParams = 24

// arg is one kernel argument: its kind and its bits (little-endian, low
// bytes used for 4-byte kinds).
type arg struct {
	kind paramKind
	bits uint64
}

func argPtr(p uintptr) arg { return arg{kPtr, uint64(p)} }
func argBuf(b *Buffer) arg { return arg{kPtr, uint64(ptrOf(b))} }
func argI32(v int32) arg   { return arg{kI32, uint64(uint32(v))} }
func argF32(v float32) arg { return arg{kF32, uint64(f32bits(v))} }
func argI64(v int64) arg   { return arg{kI64, uint64(v)} }
func argF64(v float64) arg { return arg{kF64, f64bits(v)} }

// argInt passes a Go int as a C int, failing when it does not fit.
func argInt(name string, v int) (arg, error) {
	if v < -1<<31 || v > 1<<31-1 {
		return arg{}, fmt.Errorf("cuda: %s = %d does not fit a 32-bit int", name, v)
	}
	return argI32(int32(v)), nil
}

func f32bits(v float32) uint32 { return math.Float32bits(v) }
func f64bits(v float64) uint64 { return math.Float64bits(v) }

// paramBlock is the memory cuLaunchKernel reads its kernelParams from: an
// array of pointers, each to an 8-byte slot holding one argument. It is
// allocated once per device and pinned (runtime.Pinner) for the device's
// life, since C reads it through a pointer array; the driver copies the
// values during the launch call, so one block serves every launch.
type paramBlock struct {
	vals [maxParams]uint64
	ptrs [maxParams]unsafe.Pointer
}

// pack checks args against the kernel's signature and fills the block,
// returning the kernelParams pointer (nil for a kernel without
// parameters).
func (pb *paramBlock) pack(k *kernelSig, args []arg) (unsafe.Pointer, error) {
	if len(args) != len(k.kinds) {
		return nil, fmt.Errorf("cuda: kernel %s takes %d arguments (%s), got %d", k.name, len(k.kinds), k.params, len(args))
	}
	for i, a := range args {
		if a.kind != k.kinds[i] {
			return nil, fmt.Errorf("cuda: kernel %s argument %d (%s) is %s, got %s", k.name, i, k.types[i], k.kinds[i], a.kind)
		}
		pb.vals[i] = a.bits
		pb.ptrs[i] = unsafe.Pointer(&pb.vals[i])
	}
	if len(args) == 0 {
		return nil, nil
	}
	return unsafe.Pointer(&pb.ptrs[0]), nil
}
