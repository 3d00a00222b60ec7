#!/usr/bin/env bash
# Runs the CPU backend's and the autograd's tests as arm64 binaries under
# qemu-user (the portable Go kernels every non-amd64 machine runs), after
# installing qemu-user and arm64 glibc when missing. Slow (minutes): not
# part of `make test`.
set -euo pipefail
need=()
command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
[ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] || need+=(libc6-arm64-cross)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "installing: ${need[*]}"
		apt-get update -qq >/dev/null 2>&1 || true
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
	else
		echo "test-arm64: need ${need[*]} (apt-get install them as root)" >&2
		exit 1
	fi
fi
GO=${GO:-go}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for pkg in backend/cpu nn; do
	name=$(echo "$pkg" | tr / _)
	GOARCH=arm64 CGO_ENABLED=0 "$GO" test -c -o "$out/$name.test" "./$pkg"
	echo "arm64 (qemu): ./$pkg"
	# Allocation counts are left out: under emulation the pool's workers
	# outwait their spin and park, which the counts see.
	(cd "$pkg" && qemu-aarch64 -L /usr/aarch64-linux-gnu "$out/$name.test" -test.short -test.skip 'Allocs')
done
