#!/bin/sh
# Regenerates cli/idle-code.txt: the functions idle nodes run, which the
# release `swarm` binary links first and side by side (cli/build.rs says
# why, cli/link-idle-code.sh how). Runs the idle benchmarks from BINARY
# with some of their nodes under callgrind, from their start through
# joining and SECONDS of idling:
#
#   1. `swarm bench membership --processes 30`: the seed (n1) and a
#      joining member (n15) of a cluster without heads;
#   2. `swarm bench idle`: the workers of the control plane (n4, n5: one
#      holds the lease of a placed actor, both renew theirs), a head (n1)
#      and the seed of its cluster without heads (its n1 too);
#
# then keeps every function of the binary they ran, named without the
# `.llvm.N` suffix of a promoted local function (it changes with the
# code): first those of the nodes without heads, then what the workers ran
# besides, then what the head did, each in the order callgrind lists them. An idle node of each kind then maps the
# front of the list, not all of it.
#
# Usage: cli/idle-code.sh [SECONDS [BINARY]]   (default 60, target/release/swarm;
# needs valgrind, nm and c++filt). Then rebuild (cargo build --release -p
# swarm-cli) and compare `swarm bench membership --nodes 0 --processes 30
# --idle-secs 90` with the binary before. Refresh it when an idle node's
# RSS grows back (README "Idle nodes"): stale names cost memory, not links.
set -eu
secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${2:-$root/target/release/swarm}
out=$root/cli/idle-code.txt
[ -x "$bin" ] || { echo "build first: cargo build --release -p swarm-cli" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# The benches stop their nodes with SIGKILL: ask callgrind for its counts
# every few seconds instead (each dump is a file of its own; all count).
dumps() {
    while :; do
        sleep 5
        callgrind_control -d >/dev/null 2>&1 || true
    done
}
profile() { # GROUP NAMES BENCH-ARGS...
    group=$1
    names=$2
    shift 2
    mkdir -p "$dir/$group"
    SWARM_NODE_WRAP="valgrind --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file=$dir/$group/%p.cg" \
        SWARM_NODE_WRAP_NAMES=$names "$bin" bench "$@" >"$dir/$group.out" 2>&1 &
    bench=$!
    dumps &
    dumper=$!
    wait $bench || { cat "$dir/$group.out" >&2; kill $dumper; exit 1; }
    kill $dumper
}
profile members n1,n15 membership --nodes 0 --processes 30 --idle-secs "$secs"
profile roles n1,n4,n5 idle --members 3 --idle-secs "$secs"
# Which file is whose: the node's configuration is on callgrind's cmd: line.
grep -l '^cmd:.*/control/n1\.toml' "$dir"/roles/*.cg* >"$dir/head" || true
"$root/cli/link-idle-code.sh" --functions "$bin" >"$dir/functions"
names() { # callgrind files...: function names, first seen first
    [ $# -gt 0 ] || return 0
    sed -n 's/^c\{0,1\}fn=([0-9]*) \(.*\)$/\1/p' "$@" | awk '!seen[$0]++'
}
{
    names "$dir"/members/*.cg*
    # shellcheck disable=SC2046 # file names from mktemp, no spaces
    names $(ls "$dir"/roles/*.cg* | grep -v -F -x -f "$dir/head")
    # shellcheck disable=SC2046
    names $(cat "$dir/head")
} | awk 'NR == FNR { fn[$0] = 1; next } ($0 in fn) { sub(/\.llvm\.[0-9]+$/, ""); if (!seen[$0]++) print }' \
    "$dir/functions" - >"$out"
echo "$(wc -l <"$out") functions in $out" >&2
