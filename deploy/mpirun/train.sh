#!/bin/bash
# Distributed MAI training with Open MPI's mpirun over the hosts in a hostfile (passwordless ssh,
# the same mai binary path and a shared file system for data and --out on every host):
#
#   HOSTS=hosts NP=8 deploy/mpirun/train.sh --preset tiny-moe --data /shared/shards \
#       --out /shared/runs/moe --batch 2 --accum 4 --zero 1
#
# hosts lists one host per line with its slots ("node1 slots=2"). If a rank dies, mpirun ends the
# job; this script then reruns it, and mai resumes from the last checkpoint in --out.
set -uo pipefail

NP=${NP:-2}
HOSTS=${HOSTS:-}
RETRIES=${RETRIES:-3}
THREADS=${THREADS:-0} # 0: every core a rank may use
export MAI_DIST_TIMEOUT=${MAI_DIST_TIMEOUT:-15m}

args=(-np "$NP" --bind-to none -x MAI_DIST_TIMEOUT -x PATH)
[ -n "$HOSTS" ] && args+=(--hostfile "$HOSTS" --map-by ppr:1:slot)
[ "$(id -u)" = 0 ] && args+=(--allow-run-as-root)

for attempt in $(seq 1 "$RETRIES"); do
	if mpirun "${args[@]}" mai train --threads "$THREADS" "$@"; then
		exit 0
	fi
	echo "mai train failed (attempt $attempt of $RETRIES); resuming from the last checkpoint" >&2
	sleep 5
done
exit 1
