#!/usr/bin/env bash
# MAI GPU device check. Runs, on a machine with an NVIDIA GPU, the test
# binary and the mai binary built elsewhere with CGO_ENABLED=0, builds
# nothing, and prints a short table at the end. Logs go under $OUT (or a
# temporary folder).
#
# Before (on the build machine, from the repository root):
#   CGO_ENABLED=0 go test -c -o .gpu/cuda.test ./backend/cuda
#   CGO_ENABLED=0 go test -c -o .gpu/gpu.test ./model/gpu && gzip -f .gpu/gpu.test
#   CGO_ENABLED=0 go build -ldflags='-s -w' -o .gpu/mai ./cmd/mai && gzip -f .gpu/mai
# (gzip keeps the carried folder, about 40 MB, under the 64 MiB limit; the
# script unpacks .gpu/*.gz into a temporary folder.) Then carry .gpu to the GPU machine and run, from
# the repository root:
#   bash backend/cuda/testdata/device_check.sh
#
# Steps (each bounded by a timeout; the whole run takes about 6 minutes):
#   env       nvidia-smi, the loader's view of the CUDA libraries
#   info      what `mai gpu info` reports, as is and without LD_LIBRARY_PATH
#   wheel     NVRTC from a pip wheel (builtins pre-open), cold compile
#   tests     every test; the "cuda" subtests compare each GPU kernel with
#             backend/cpu (the CPU emulator is switched off here)
#   step      model/gpu's tests: a training step on the GPU against the CPU
#             path (loss, every gradient, AdamW), three steps, errors
#   train     mai train --device cuda (tiny, 30 steps); mai bench train
#             --device cuda, GPT-2 124M at B=16 T=1024
#   pytorch   bench/gpt2_pytorch.py: the same step in PyTorch, eager and
#             torch.compile (tokens/s, MFU), for the side-by-side
#   bench     GEMM, attention, memory-bound kernels, launch cost, copies
#   torch     PyTorch's SDPA and matmul on the same shapes, as a baseline
set -u
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
BIN=${1:-$ROOT/.gpu/cuda.test}
MAI=${MAI_BIN:-$ROOT/.gpu/mai} # optional; carried gzipped
GPUTEST=${GPU_TEST:-$ROOT/.gpu/gpu.test} # model/gpu's tests, optional
OUT=${OUT:-$(mktemp -d)}
LOG=$OUT/device_check
mkdir -p "$LOG"
# Unpack gzipped binaries next to the logs ($OUT comes back; keep them out of it).
UNPACK=$(mktemp -d)
for z in "$ROOT"/.gpu/*.gz; do
	[ -e "$z" ] || continue
	b=$(basename "$z" .gz)
	gunzip -c "$z" >"$UNPACK/$b" && chmod +x "$UNPACK/$b"
	case $b in
	mai) [ -x "$MAI" ] || MAI=$UNPACK/mai ;;
	gpu.test) [ -x "$GPUTEST" ] || GPUTEST=$UNPACK/gpu.test ;;
	cuda.test) [ -x "$BIN" ] || BIN=$UNPACK/cuda.test ;;
	esac
done
export MAI_CUDA_EMU=${MAI_CUDA_EMU:-off}
export MAI_CUDA_CACHE=$LOG/kernel-cache
PY=${PYTHON:-/opt/torch/.venv/bin/python}

ROWS=()
row() { ROWS+=("$(printf '%-40s %-5s %s' "$1" "$2" "$3")"); }
ok() { if [ "$1" -eq 0 ]; then echo ok; else echo FAIL; fi; }

if [ ! -x "$BIN" ]; then
	echo "device_check: no test binary at $BIN; build it first:" >&2
	echo "  CGO_ENABLED=0 go test -c -o .gpu/cuda.test ./backend/cuda" >&2
	exit 2
fi
T0=$(date +%s)

# env
{
	echo "# nvidia-smi"
	timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv 2>&1
	echo "# LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
	echo "# ldconfig"
	ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libnvrtc|libcublas' | head -20
} >"$LOG/env.txt" 2>&1
gpu=$(timeout 30 nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)
row "nvidia-smi" "$([ -n "$gpu" ] && echo ok || echo FAIL)" "${gpu:-no GPU visible}"

# info: what `mai gpu info` prints (TestProbe), as is and without
# LD_LIBRARY_PATH (MAI's own library search).
cd "$ROOT/backend/cuda" || exit 2
info() { # name, log, env...
	local name=$1 log=$2
	shift 2
	timeout 60 env "$@" MAI_CUDA_REQUIRE=1 "$BIN" -test.v -test.run '^TestProbe$' >"$LOG/$log" 2>&1
	local rc=$?
	local what
	what=$(grep -m1 -oE 'device [0-9]+ .*' "$LOG/$log" || grep -m1 -oE -- '- cuda: .*' "$LOG/$log")
	row "$name" "$(ok $rc)" "$(echo "$what" | cut -c1-110)"
}
info "gpu info" gpu-info.txt
info "gpu info (no LD_LIBRARY_PATH)" gpu-info-no-ldpath.txt -u LD_LIBRARY_PATH
if [ -x "$MAI" ]; then
	timeout 60 "$MAI" gpu info --require >"$LOG/mai-gpu-info.txt" 2>&1
	row "mai gpu info --require" "$(ok $?)" "mai-gpu-info.txt"
fi


# wheel: NVRTC from a pip wheel, not on the loader's path; a cold compile
# needs libnvrtc-builtins pre-opened from the same folder.
wheel=""
for d in /opt/torch/.venv/lib/python3*/site-packages/nvidia/cu13/lib /opt/torch/.venv/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib; do
	if ls "$d"/libnvrtc.so* >/dev/null 2>&1; then
		wheel=$d
		break
	fi
done
if [ -n "$wheel" ]; then
	MAI_LIBNVRTC=$wheel timeout 120 env -u LD_LIBRARY_PATH "$BIN" -test.v -test.run '^TestDeviceOpenCompileAndCache$' >"$LOG/wheel.log" 2>&1
	rc=$?
	row "NVRTC from pip wheel, cold compile" "$(ok $rc)" "$(grep -m1 -o 'compiled the kernels.*in [0-9.]*[mµ]*s' "$LOG/wheel.log" || echo "see wheel.log") ($wheel)"
else
	row "NVRTC from pip wheel" "skip" "no wheel NVRTC under /opt/torch/.venv"
fi

# tests
timeout 300 "$BIN" -test.v -test.count=1 -test.timeout 290s >"$LOG/test.log" 2>&1
rc=$?
pass=$(grep -cE '^\s+--- PASS: Test\w+/cuda( |$)|^--- PASS: TestDevice' "$LOG/test.log")
fail=$(grep -cE '^\s+--- FAIL: Test\w+/cuda( |$)|^--- FAIL: TestDevice' "$LOG/test.log")
skip=$(grep -cE '^\s+--- SKIP: Test\w+/cuda( |$)|^--- SKIP: TestDevice' "$LOG/test.log")
row "tests (GPU vs backend/cpu)" "$(ok $rc)" "$pass passed, $fail failed, $skip skipped (exit $rc)"
for t in $(grep -oE '^\s+--- FAIL: Test[^ ]+/cuda[^ ]*' "$LOG/test.log" | awk '{print $3}' | head -12); do
	msg=$(grep -A3 -F -- "--- FAIL: $t " "$LOG/test.log" | grep -m1 -E '_test.go:[0-9]+' | sed 's/^ *//' | cut -c1-120)
	row "  $t" "FAIL" "$msg"
done
grep -m1 -oE 'cuda: testing on .*' "$LOG/test.log" >"$LOG/device.txt"
row "device" "" "$(sed "s/^cuda: testing on //" "$LOG/device.txt" | cut -c1-110 | grep . || echo -)"

# step: model/gpu's tests on the GPU (the emulator is off).
if [ -x "$GPUTEST" ]; then
	(cd "$ROOT/model/gpu" && timeout 180 "$GPUTEST" -test.v -test.count=1 -test.timeout 170s) >"$LOG/step.log" 2>&1
	rc=$?
	pass=$(grep -cE '^\s+--- PASS: Test\w+/cuda' "$LOG/step.log")
	fail=$(grep -cE '^\s+--- FAIL: Test\w+/cuda' "$LOG/step.log")
	row "train step (GPU vs CPU path)" "$(ok $rc)" "$pass passed, $fail failed (exit $rc); step.log"
	while read -r line; do
		row "  $(echo "$line" | sed -E 's/.*step_test.go:[0-9]+: //' | cut -c1-40)" "" "$(echo "$line" | sed -E 's/.*step_test.go:[0-9]+: //' | cut -c41-150)"
	done < <(grep -E 'step_test.go:[0-9]+: (loss|step [0-9])' "$LOG/step.log" | head -8)
else
	row "train step (GPU vs CPU path)" "skip" "no $GPUTEST (go test -c -o .gpu/gpu.test ./model/gpu)"
fi

# train: mai train end to end on the GPU (tiny preset on the repository's
# docs as byte-level text: steps, validation, checkpoints), then mai's
# training step on GPT-2 124M.
if [ -x "$MAI" ]; then
	timeout 180 "$MAI" train --device cuda --preset tiny --data "$ROOT/docs" --out "$LOG/train-tiny" --steps 30 --batch 8 --seq 128 \
		--eval-every 10 --save-every 10 --log-every 10 >"$LOG/train-tiny.log" 2>&1
	rc=$?
	what=$(grep -E '^done:|^step +30/' "$LOG/train-tiny.log" | tail -2 | tr '\n' ' ' | cut -c1-110)
	row "mai train --device cuda (tiny, 30 steps)" "$(ok $rc)" "${what:-$(tail -1 "$LOG/train-tiny.log" | cut -c1-110)}"
fi
if [ -x "$MAI" ]; then
	for shape in "16 1024" "4 1024"; do
		set -- $shape
		timeout 240 "$MAI" bench train --device cuda --preset gpt2-124m --batch "$1" --seq "$2" --steps 5 --json >"$LOG/bench-train-b$1.json" 2>"$LOG/bench-train-b$1.log"
		rc=$?
		r=$(cat "$LOG/bench-train-b$1.json" 2>/dev/null)
		what=$(echo "$r" | grep -oE '"ms_per_step":[0-9.]+|"tokens_per_s":[0-9.]+|"gflops":[0-9.]+' | tr '\n' ' ')
		row "mai bench train gpt2-124m B=$1 T=$2" "$(ok $rc)" "${what:-$(tail -1 "$LOG/bench-train-b$1.log" | cut -c1-110)}"
		[ $rc -eq 0 ] && break # the smaller shape only when the larger fails
	done
else
	row "mai bench train" "skip" "no mai binary ($MAI; see the header)"
fi

# bench
timeout 240 "$BIN" -test.run '^$' -test.bench 'Device' -test.benchtime 10x -test.timeout 230s >"$LOG/bench.log" 2>&1
rc=$?
row "benchmarks" "$(ok $rc)" "bench.log"
# One row per benchmark: its throughput metric, else device us/op, else ns/op.
while read -r line; do
	name=$(echo "$line" | awk '{print $1}' | sed 's/^BenchmarkDevice//; s/-[0-9]*$//')
	metric=$(echo "$line" | grep -oE '[0-9.]+ (TFLOP/s|GB/s|MB/s)' | head -1)
	dev=$(echo "$line" | grep -oE '[0-9.]+ dev-us/op' | head -1)
	ns=$(echo "$line" | grep -oE '[0-9.]+ ns/op' | head -1)
	row "  $name" "" "${metric:-${dev:-$ns}}${dev:+ ($dev)}"
done < <(grep -E '^BenchmarkDevice' "$LOG/bench.log")

# torch: the same shapes in PyTorch (SDPA flash attention, bf16 matmul).
if [ -x "$PY" ]; then
	timeout 120 "$PY" - >"$LOG/torch.log" 2>&1 <<'EOF'
import time, torch
import torch.nn.functional as F
dev = "cuda"
def bench(fn, n=10):
    fn(); torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(n): fn()
    e.record(); torch.cuda.synchronize()
    return s.elapsed_time(e) / n / 1e3
for m, n, k in [(8192, 8192, 8192), (16384, 3072, 768), (16384, 50304, 768)]:
    a = torch.randn(m, k, device=dev, dtype=torch.bfloat16); w = torch.randn(n, k, device=dev, dtype=torch.bfloat16)
    t = bench(lambda: a @ w.T)
    print(f"torch matmul bf16 {m}x{n}x{k}: {2*m*n*k/t/1e12:.0f} TFLOP/s ({t*1e6:.0f} us)")
for B, T, H, KV, D in [(8, 1024, 12, 12, 64), (2, 2048, 32, 8, 128)]:
    q = torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(B, KV, T, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(B, KV, T, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
    gqa = dict(enable_gqa=True) if KV != H else {}
    o = F.scaled_dot_product_attention(q, k, v, is_causal=True, **gqa)
    g = torch.randn_like(o)
    flops = 2 * 2 * B * H * T * T / 2 * D
    tf = bench(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, **gqa))
    tb = bench(lambda: torch.autograd.grad(o, (q, k, v), g, retain_graph=True))
    print(f"torch sdpa B{B} T{T} H{H} KV{KV} D{D}: fwd {flops/tf/1e12:.0f} TFLOP/s ({tf*1e6:.0f} us), bwd {2.5*flops/tb/1e12:.0f} TFLOP/s ({tb*1e6:.0f} us)")
EOF
	rc=$?
	row "torch baseline" "$(ok $rc)" "torch.log"
	while read -r line; do
		row "  ${line%%:*}" "" "${line#*: }"
	done < <(grep -E '^torch ' "$LOG/torch.log")
else
	row "torch baseline" "skip" "no $PY"
fi

# pytorch: the GPT-2 training step beside mai's.
if [ -x "$PY" ] && [ -f "$ROOT/bench/gpt2_pytorch.py" ]; then
	timeout 300 "$PY" "$ROOT/bench/gpt2_pytorch.py" --batch 16 --seq 1024 --steps 10 >"$LOG/pytorch-gpt2.log" 2>&1
	rc=$?
	row "pytorch gpt2-124m B=16 T=1024" "$(ok $rc)" "pytorch-gpt2.log"
	while read -r line; do
		row "  ${line%%:*}" "" "$(echo "${line#*: }" | cut -c1-110)"
	done < <(grep -E '^pytorch ' "$LOG/pytorch-gpt2.log")
else
	row "pytorch gpt2" "skip" "no $PY or bench/gpt2_pytorch.py"
fi

echo
echo "== MAI GPU device check ($(($(date +%s) - T0)) s; logs in $LOG) =="
printf '%s\n' "${ROWS[@]}"
