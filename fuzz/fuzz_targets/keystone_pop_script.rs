//! PoP payload: `AbbreviatedKeystone::from_pop_script` and `from_bytes` on arbitrary bytes must
//! never panic, and whatever they accept must re-encode to exactly the bytes given (both forms
//! are canonical: one accepted script per keystone). Keystone hashes as RPC and HTTP callers
//! pass them (`KeystoneId::from_hex`) never panic and print back to what they parse from.
#![no_main]

use bitcoin::hashes::{sha256d, Hash};
use bitcoin::Script;
use hemi_keystone::{AbbreviatedKeystone, KeystoneId, POP_SCRIPT_LEN, POP_TAG};
use libfuzzer_sys::fuzz_target;

fn check(data: &[u8]) {
    if let Ok(k) = AbbreviatedKeystone::from_pop_script(Script::from_bytes(data)) {
        let script = k.pop_script();
        assert_eq!(script.as_bytes(), data, "PoP script does not round-trip");
        assert_eq!(data.len(), POP_SCRIPT_LEN);
        assert!(script.is_op_return());
        assert_eq!(AbbreviatedKeystone::from_bytes(&k.to_bytes()), Ok(k));
    }
    if let Ok(k) = AbbreviatedKeystone::from_bytes(data) {
        assert_eq!(
            &k.to_bytes()[..],
            data,
            "abbreviated keystone does not round-trip"
        );
        assert_eq!(
            AbbreviatedKeystone::from_pop_script(&k.pop_script()),
            Ok(k),
            "pop_script of a keystone does not parse back"
        );
        assert_eq!(k.id().0, sha256d::Hash::hash(data).to_byte_array());
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(id) = KeystoneId::from_hex(text) {
            assert_eq!(KeystoneId::from_hex(&id.to_hex()), Ok(id));
            assert_eq!(id.to_hex(), text.trim_start_matches("0x").to_ascii_lowercase());
        }
    }
    // The same bytes behind a correct prefix, so the fuzzer reaches the payload without
    // having to guess `OP_RETURN OP_PUSHDATA1 0x50 "HEMI"`.
    let mut script = vec![0x6a, 0x4c, 0x50];
    script.extend_from_slice(&POP_TAG);
    script.extend_from_slice(data);
    check(&script);
});
