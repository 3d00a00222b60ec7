//go:build linux && (amd64 || arm64)

package cuda

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

// needGPU returns the shared real device or skips with the reason.
func needGPU(tb testing.TB) *Device {
	tb.Helper()
	if os.Getenv("MAI_CUDA_GPU") == "off" {
		tb.Skip("MAI_CUDA_GPU=off")
	}
	d, err := cudaDevice()
	if err != nil {
		tb.Skipf("no cuda device: %s", shortReason(err))
	}
	return d
}

// TestDeviceOpenCompileAndCache opens the GPU twice with a fresh kernel
// cache: the first open compiles with NVRTC (to a CUBIN for the device's
// architecture) and stores the module, the second loads it from the cache.
func TestDeviceOpenCompileAndCache(t *testing.T) {
	needGPU(t)
	dir := t.TempDir()
	open := func() DeviceInfo {
		d, err := Open(Options{CacheDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		// One kernel through the freshly loaded module.
		b, err := d.FromHost(F32, []float32{1, 2, 3})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Scale(b, 2); err != nil {
			t.Fatal(err)
		}
		got := make([]float32, 3)
		if err := d.Download(got, b); err != nil || got[2] != 6 {
			t.Fatalf("scale on a fresh device: %v, %v", got, err)
		}
		return d.Info()
	}
	cold := open()
	if cold.CompileTime <= 0 || cold.CacheFile == "" {
		t.Fatalf("first open: compile time %v, cache file %q", cold.CompileTime, cold.CacheFile)
	}
	if _, err := os.Stat(cold.CacheFile); err != nil {
		t.Fatalf("cache file: %v", err)
	}
	warm := open()
	if warm.CompileTime != 0 || warm.CacheFile != cold.CacheFile {
		t.Errorf("second open compiled again (%v) or used another file (%q)", warm.CompileTime, warm.CacheFile)
	}
	t.Logf("NVRTC %s compiled the kernels for sm_%d in %v (cached in %s)", cold.NVRTCVersion, cold.Arch, cold.CompileTime, cold.CacheFile)
	for _, l := range cold.Libraries {
		t.Logf("  %-15s %s %s", l.Name, l.Path, l.Version)
	}
}

func TestDeviceInfo(t *testing.T) {
	d := needGPU(t)
	i := d.Info()
	if i.Name == "" || i.SM < 50 || i.SMs <= 0 || i.Memory <= 0 || i.FreeMemory <= 0 || i.FreeMemory > i.Memory {
		t.Errorf("implausible device info %+v", i)
	}
	if i.Arch/10 != i.SM/10 || i.Arch > i.SM {
		t.Errorf("kernels compiled for sm_%d on an sm_%d device", i.Arch, i.SM)
	}
	r := Probe()
	var b strings.Builder
	r.Write(&b)
	t.Logf("mai gpu info:\n%s", b.String())
	if len(r.Devices) == 0 {
		t.Errorf("Probe found no device while Open did: %v", r.Problems)
	}
}

// TestDeviceMemory checks the pool on the device: repeated steps reuse
// blocks, freed memory is reusable, pinned host memory round-trips.
func TestDeviceMemory(t *testing.T) {
	d := needGPU(t)
	_, _, before, err := d.MemStats()
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		a, err := d.Alloc(BF16, 3<<20)
		if err != nil {
			t.Fatal(err)
		}
		b, err := d.Alloc(F32, 1000)
		if err != nil {
			t.Fatal(err)
		}
		d.Free(a, b)
	}
	_, _, after, _ := d.MemStats()
	if after-before > 2 {
		t.Errorf("3 identical steps made %d driver allocations", after-before)
	}
	h, err := d.AllocHost(4 << 20)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Free()
	f := h.Float32()
	for i := range f {
		f[i] = float32(i)
	}
	buf, err := d.Alloc(F32, len(f))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free(buf)
	if err := d.Upload(buf, f); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, len(f))
	if err := d.Download(got, buf); err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != float32(i) {
			t.Fatalf("pinned round trip: %d -> %v", i, got[i])
		}
	}
}

// TestDeviceErrors checks that a bad launch is reported, not fatal, and the
// device stays usable.
func TestDeviceErrors(t *testing.T) {
	d := needGPU(t)
	err := d.run(func() error {
		return d.launch("scale_f32", dim3{1, 1, 1}, dim3{2048, 1, 1}, 0, argPtr(0), argF32(1), argI64(0))
	})
	if err == nil {
		t.Error("a 2048-thread block launched")
	} else {
		t.Logf("expected launch error: %v", err)
	}
	b, err := d.FromHost(F32, []float32{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free(b)
	if err := d.Scale(b, 3); err != nil {
		t.Fatal(err)
	}
	got := make([]float32, 2)
	if err := d.Download(got, b); err != nil || got[1] != 6 {
		t.Errorf("device after an error: %v %v", got, err)
	}
	if _, err := d.Alloc(F32, math.MaxInt32*64); err == nil {
		t.Error("a 512 GiB allocation succeeded")
	}
}

// TestDeviceTimer checks events against the wall clock around a sync.
func TestDeviceTimer(t *testing.T) {
	d := needGPU(t)
	x, err := d.Alloc(F32, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free(x)
	d.Zero(x)
	t0 := time.Now()
	el, err := d.Time(func() error {
		for range 20 {
			if err := d.Scale(x, 1.0001); err != nil {
				return err
			}
		}
		return nil
	})
	wall := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	if el <= 0 || el > wall+time.Millisecond {
		t.Errorf("event time %v, wall %v", el, wall)
	}
	t.Logf("20 scales of 256 MiB: %v on the device (%.0f GB/s), %v wall", el, 20*2*256/1024/el.Seconds(), wall)
}

// TestProbe prints what `mai gpu info` prints. It fails only when
// MAI_CUDA_REQUIRE=1 (the device check) and no usable GPU was found.
func TestProbe(t *testing.T) {
	r := Probe()
	var b strings.Builder
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	t.Logf("gpu info:\n%s", b.String())
	if os.Getenv("MAI_CUDA_REQUIRE") == "1" && !r.OK() {
		t.Fatalf("MAI_CUDA_REQUIRE=1 and no usable GPU: %v", r.Problems)
	}
}
