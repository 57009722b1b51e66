//! Links the `swarm` binary's start-up and idle code together.
//!
//! `symbol-order.txt` lists the functions a node runs from its start
//! through joining a cluster and idling in it, as measured by
//! `cli/symbol-order.sh` (callgrind). The linker places them first
//! and side by side in `.text` (lld's `--symbol-ordering-file`; rustc
//! gives every function its own section). An idle node then maps about
//! 2 MiB of code instead of 15: the kernel maps the binary's page cache a
//! whole folio (up to 128 KiB here) at a time, and 2,200 functions spread
//! over 24 MB of code touched 123 distinct folios (README "Idle nodes").
//!
//! Only for release builds for x86_64 Linux, whose default linker is
//! rustc's lld; not when another linker is configured through the
//! environment (it may not know the option), nor with
//! `SWARM_SYMBOL_ORDER=0`. A name the build no longer has is skipped: a
//! stale list costs memory, never a failed link.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=SWARM_SYMBOL_ORDER");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER");
    let var = |name: &str| env::var(name).unwrap_or_default();
    if var("TARGET") != "x86_64-unknown-linux-gnu"
        || var("PROFILE") != "release"
        || var("SWARM_SYMBOL_ORDER") == "0"
        || env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
        || var("CARGO_ENCODED_RUSTFLAGS").contains("link")
    {
        return;
    }
    let list = Path::new(&var("CARGO_MANIFEST_DIR")).join("symbol-order.txt");
    if !list.is_file() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=swarm=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    println!("cargo:rustc-link-arg-bin=swarm=-Wl,--no-warn-symbol-ordering");
}
