//! Links the `hemi` binary with packed relative relocations (`-z pack-relative-relocs`,
//! DT_RELR) where the toolchain and C library support them.
//!
//! A position-independent executable carries one 24-byte relocation for every pointer in its
//! read-only data; the dynamic loader reads them all at start, so this binary's 1.8 MB
//! `.rela.dyn` was resident in every process. DT_RELR packs them into a bitmap of a few
//! kilobytes (binutils ≥ 2.38, glibc ≥ 2.36; Fedora, Android and ChromeOS link this way). The
//! flag is tried on a one-line C program first, linked (warnings fatal: an old GNU ld only
//! warns about an unknown `-z` option) and run, so an older linker or C library gets the
//! ordinary relocations instead of a failed build. A binary linked so needs glibc ≥ 2.36 where
//! it runs: build it where it will run, or on the oldest C library among those machines.

use std::path::PathBuf;
use std::process::Command;

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    println!("cargo:rerun-if-env-changed=RUSTC_LINKER");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    // Only where the probe can run what it linked.
    if target != host || !target.contains("linux-gnu") {
        return;
    }
    if probe().unwrap_or(false) {
        println!("cargo:rustc-link-arg-bins={FLAG}");
    } else {
        println!("cargo:warning=linking without packed relative relocations (-z pack-relative-relocs is not supported here)");
    }
}

/// Whether the C compiler links and runs a program with [`FLAG`].
fn probe() -> Option<bool> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR")?);
    let src = out.join("relr_probe.c");
    let exe = out.join("relr_probe");
    // A writable array of pointers: relative relocations the loader must apply.
    std::fs::write(
        &src,
        "const char *p[] = {\"a\", \"b\"}; int main(void) { return p[1][0] != 'b'; }\n",
    )
    .ok()?;
    // The linker cargo uses (a C compiler driver), else $CC, else cc; may carry arguments.
    let cc = std::env::var("RUSTC_LINKER")
        .or_else(|_| std::env::var("CC"))
        .unwrap_or_else(|_| "cc".into());
    let mut words = cc.split_whitespace();
    let linked = Command::new(words.next()?)
        .args(words)
        .args(["-pie", "-fPIE", "-O0", "-Wl,--fatal-warnings", FLAG, "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .ok()?;
    if !linked.status.success() {
        return Some(false);
    }
    Some(Command::new(&exe).status().ok()?.success())
}
