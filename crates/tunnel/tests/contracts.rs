//! The committed runtime code of the tunnel's contracts is what the pinned solc-js builds from
//! `contracts/` today: recompiles with `node tests/js/compile.mjs --check-tunnel` (the npm
//! packages scripts/test.sh installs) and fails on any difference.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn the_committed_contract_code_is_what_solc_builds_from_the_sources() {
    let js = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/js");
    assert!(
        js.join("node_modules/solc").exists(),
        "tests/js/node_modules/solc is missing: run `npm install --prefix tests/js` (scripts/test.sh does)"
    );
    let out = Command::new("node")
        .arg("compile.mjs")
        .arg("--check-tunnel")
        .current_dir(&js)
        .output()
        .expect("running node (Node.js >= 20 is needed)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
