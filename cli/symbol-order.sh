#!/bin/sh
# Regenerates cli/symbol-order.txt, the functions the release build of
# `swarm` links first and side by side (cli/build.rs says why): starts a
# throwaway 3-node cluster without heads from the release binary, runs the
# seed and a joining node under callgrind for SECONDS (default 60) of
# start-up, joining and idling, stops them (SIGINT: the leave is counted
# too), and keeps every function of the binary either ran.
#
# Usage: cli/symbol-order.sh [SECONDS]   (needs valgrind and nm)
# Then rebuild (cargo build --release -p swarm-cli) and compare
# `swarm bench membership --nodes 0 --processes 30 --idle-secs 90`.
set -eu
secs=${1:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release/swarm
out=$root/cli/symbol-order.txt
port=${SWARM_ORDER_PORT:-47901}
[ -x "$bin" ] || { echo "build first: cargo build --release -p swarm-cli" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export SWARM_PASS="symbol-order $$"
"$bin" ca init --dir "$dir" --passphrase-env SWARM_PASS >/dev/null
for n in n1 n2 n3; do
    "$bin" cert issue --ca-dir "$dir" --out "$dir" --name $n --roles worker \
        --passphrase-env SWARM_PASS >/dev/null
    cat >"$dir/$n.toml" <<EOF
cluster = "order"
listen = "127.0.0.1:0"
key = "$n.key"
cert = "$n.cert"
ca = "ca.pub"
secret = "join.secret"
peers = []
EOF
done
vg="valgrind --tool=callgrind --demangle=no --dump-instr=no"
start() { # NAME WRAPPER [ARGS...]: a node in the background, its pid in $pid
    name=$1
    wrap=$2
    shift 2
    # $wrap unquoted: empty, or the valgrind command and its options.
    $wrap "$bin" node start --config "$dir/$name.toml" --passphrase-env SWARM_PASS "$@" \
        >"$dir/$name.out" 2>&1 &
    pid=$!
}
start n1 "$vg --callgrind-out-file=$dir/n1.cg" --listen 127.0.0.1:$port
seed=$pid
# valgrind starts slowly: wait for the seed's READY line.
i=0
until grep -q '^READY' "$dir/n1.out"; do
    i=$((i + 1))
    [ $i -lt 600 ] || { cat "$dir/n1.out" >&2; exit 1; }
    sleep 0.1
done
start n2 "" --seed 127.0.0.1:$port
plain=$pid
start n3 "$vg --callgrind-out-file=$dir/n3.cg" --seed 127.0.0.1:$port
joiner=$pid
sleep "$secs"
kill -INT $joiner $plain
wait $joiner $plain || true
kill -INT $seed
wait $seed || true
# Names of the functions callgrind saw (fn= and cfn= lines define them),
# kept if the binary defines them in its code, in first-seen order.
nm --defined-only "$bin" | awk '$2 ~ /^[tTwW]$/ { print $3 }' | sort -u >"$dir/text"
cat "$dir/n1.cg" "$dir/n3.cg" |
    sed -n 's/^c\{0,1\}fn=([0-9]*) \(.*\)$/\1/p' |
    awk 'NR == FNR { text[$0] = 1; next } ($0 in text) && !seen[$0]++' "$dir/text" - >"$out"
echo "$(wc -l <"$out") functions in $out" >&2
