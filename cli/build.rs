//! Links the `swarm` binary's idle code first and side by side.
//!
//! `idle-code.txt` names the functions idle nodes ran from their start (a
//! member of a 30-node cluster without heads, the lease-holding workers
//! and a head of a control plane), as measured by `cli/idle-code.sh`
//! under callgrind. The kernel maps a binary's page cache a whole folio
//! (up to 128 KiB) per fault, so the ~2,000 functions an idle node runs,
//! spread over 26 MB of code, made ~13 MiB of its RSS; side by side they
//! take about 2 MiB (README "Idle nodes").
//!
//! lld places the functions the list names first (`--symbol-ordering-file`);
//! `cli/link-idle-code.sh`, this workspace's linker for x86_64 Linux
//! (`.cargo/config.toml`), adds their `.llvm.N` copies and what a stale
//! list names under an older name, and links again. A name the build does
//! not have is skipped: a stale list costs memory, never a link. Only for
//! release builds (and `dist`) for x86_64 Linux, whose default linker is
//! rustc's lld; `SWARM_IDLE_CODE=0` turns it off.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=idle-code.txt");
    println!("cargo:rerun-if-env-changed=SWARM_IDLE_CODE");
    let var = |name: &str| env::var(name).unwrap_or_default();
    if var("TARGET") != "x86_64-unknown-linux-gnu"
        || var("PROFILE") != "release"
        || var("SWARM_IDLE_CODE") == "0"
    {
        return;
    }
    // Relative relocations packed (DT_RELR, glibc 2.36 and later; lld
    // marks the binary so that an older glibc refuses it at once): the
    // dynamic loader reads all of `.rela.dyn` at start, 0.8 MB of it, and
    // the folios it read stay mapped. RELR takes a few KiB for the same.
    println!("cargo:rustc-link-arg-bin=swarm=-Wl,-z,pack-relative-relocs");
    let list = Path::new(&var("CARGO_MANIFEST_DIR")).join("idle-code.txt");
    if !list.is_file() {
        return;
    }
    println!(
        "cargo:rustc-link-arg-bin=swarm=-Wl,--symbol-ordering-file={}",
        list.display()
    );
    println!("cargo:rustc-link-arg-bin=swarm=-Wl,--no-warn-symbol-ordering");
}
