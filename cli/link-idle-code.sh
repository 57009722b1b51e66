#!/bin/sh
# The linker of this workspace's x86_64 Linux builds (.cargo/config.toml):
# `cc`, as rustc calls it, for every link but the release `swarm`
# binary's, which it links twice to put an idle node's code first and
# side by side (README "Idle nodes", cli/build.rs):
#
# 1. cli/build.rs passes `-Wl,--symbol-ordering-file=.../cli/idle-code.txt`
#    for that link: lld places the functions it names first, in its
#    order. The list names them without the `.llvm.N` suffix of a
#    promoted local function, which changes with the code, so those
#    (and every copy of them) are not placed yet.
# 2. This script reads that binary's functions (nm, c++filt) and writes
#    the exact names of what the list names: a listed name with all its
#    `.llvm.N` copies; a name the binary no longer has (a stale list: a
#    changed dependency or compiler renames everything), by its name
#    without hashes, if at most 4 functions have that name (the instances
#    of a generic function share it under legacy mangling). Then it links
#    again with that file.
#
# The second link only improves the first: if a tool is missing or
# anything in it fails, the first binary stays. A stale list costs
# memory, never a link.
#
# `cli/link-idle-code.sh --functions BINARY` lists BINARY's functions
# (cli/idle-code.sh keeps those a node ran).
set -u

keys() { # FILE: "name<TAB>name without .llvm.N<TAB>key" per line of FILE
    sed -E 's/\.llvm\.[0-9]+$//' "$1" >"$1.base" &&
        c++filt <"$1" | sed -E 's/\[[0-9a-f]+\]//g; s/::h[0-9a-f]{16}$//; s/\.llvm\.[0-9]+$//' |
        paste "$1" "$1.base" -
    status=$?
    rm -f "$1.base"
    return $status
}

functions() { # BINARY: the names of its functions
    nm --defined-only "$1" | awk '$2 ~ /^[tTwW]$/ { print $3 }' | sort -u
}

if [ "${1:-}" = --functions ]; then
    functions "$2"
    exit
fi

list=
out=
prev=
for arg do
    case $arg in
    -Wl,--symbol-ordering-file=*/idle-code.txt) list=${arg#-Wl,--symbol-ordering-file=} ;;
    esac
    [ "$prev" = -o ] && out=$arg
    prev=$arg
done
[ -n "$list" ] && [ -n "$out" ] || exec cc "$@"

cc "$@" || exit
command -v nm >/dev/null && command -v c++filt >/dev/null || exit 0
order=$out.order
# The list's names, then the binary's, each with its key; a listed name
# the binary has is placed with all its copies (`.llvm.N`); one it lacks,
# by its key, if the key names at most 4 functions (a generic function's
# instances share a key under legacy mangling: a name of a stale list may
# not drag them all in).
functions "$out" >"$out.fns" && keys "$out.fns" >"$out.keys" &&
    grep -v '^$' "$list" >"$out.list" && keys "$out.list" >"$out.listkeys" &&
    awk -F '\t' '
        FILENAME == ARGV[1] { base[$2] = base[$2] $1 "\n"; bykey[$3] = bykey[$3] $1 "\n"; n[$3]++; next }
        ($2 in base) { printf "%s", base[$2]; next }
        ($3 in n) && n[$3] <= 4 { printf "%s", bykey[$3] }
    ' "$out.keys" "$out.listkeys" | awk '!seen[$0]++' >"$order"
rm -f "$out.fns" "$out.keys" "$out.list" "$out.listkeys"
[ -s "$order" ] || exit 0
prev=
for arg do
    shift
    case $arg in
    -Wl,--symbol-ordering-file=*/idle-code.txt) arg=-Wl,--symbol-ordering-file=$order ;;
    esac
    [ "$prev" = -o ] && arg=$out.ordered
    prev=$arg
    set -- "$@" "$arg"
done
if cc "$@"; then
    mv -f "$out.ordered" "$out"
else
    rm -f "$out.ordered"
fi
rm -f "$order"
exit 0
