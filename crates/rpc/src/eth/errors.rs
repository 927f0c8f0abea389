//! geth's JSON-RPC error codes and messages, and the mapping from [`BackendError`].
//!
//! Clients (ethers, viem, web3.py, cast) recognise errors by code and message, so every error
//! this namespace returns is shaped as geth shapes it: `-32602` for parameters that do not parse,
//! `-32000` for everything the node refuses (pool rejections verbatim, "header not found",
//! "filter not found"), `3` with the revert bytes as `data` for reverts.

use alloy_primitives::U256;
pub use jsonrpsee::types::ErrorObjectOwned;

use super::backend::BackendError;

/// JSON-RPC error codes used by the `eth_` namespace (geth's).
pub mod code {
    /// The request body is not JSON.
    pub const PARSE_ERROR: i32 = -32700;
    /// The JSON is not a JSON-RPC request.
    pub const INVALID_REQUEST: i32 = -32600;
    /// No such method.
    pub const METHOD_NOT_FOUND: i32 = -32601;
    /// Parameters of the wrong number or shape.
    pub const INVALID_PARAMS: i32 = -32602;
    /// Internal failure of the node.
    pub const INTERNAL: i32 = -32603;
    /// The node refused the request (geth's default error code).
    pub const SERVER: i32 = -32000;
    /// Execution reverted; `data` holds the revert bytes.
    pub const EXECUTION_REVERTED: i32 = 3;
}

/// The 4-byte selector of Solidity's `Error(string)`.
pub const ERROR_SELECTOR: [u8; 4] = [0x08, 0xc3, 0x79, 0xa0];
/// The 4-byte selector of Solidity's `Panic(uint256)`.
pub const PANIC_SELECTOR: [u8; 4] = [0x4e, 0x48, 0x7b, 0x71];

/// A `-32602` error with `msg`.
pub fn invalid_params(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code::INVALID_PARAMS, msg.into(), None::<()>)
}

/// A `-32000` error with `msg` (geth's code for every error without a more specific one).
pub fn server_error(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code::SERVER, msg.into(), None::<()>)
}

/// A `-32603` error with `msg`.
pub fn internal_error(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(code::INTERNAL, msg.into(), None::<()>)
}

/// geth's "header not found" (`-32000`): a state read at a block the node does not have.
pub fn header_not_found() -> ErrorObjectOwned {
    server_error("header not found")
}

/// geth's "the method X does not exist/is not available" (`-32601`).
pub fn method_not_found(method: &str) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(
        code::METHOD_NOT_FOUND,
        format!("the method {method} does not exist/is not available"),
        None::<()>,
    )
}

/// Maps a backend error to geth's code and message.
pub fn backend_error(e: BackendError) -> ErrorObjectOwned {
    match e {
        BackendError::TxRejected(m) | BackendError::Execution(m) | BackendError::NotFound(m) => {
            server_error(m)
        }
        BackendError::Reverted { data } => revert_error(&data),
        BackendError::InvalidParams(m) => invalid_params(m),
        BackendError::Internal(m) => internal_error(m),
    }
}

/// geth's revert error: code 3, "execution reverted" plus the decoded reason when the data is a
/// standard `Error(string)` or `Panic(uint256)`, and `data` = the revert bytes as 0x-hex.
///
/// geth answers an empty revert with `-32000` and no data; this returns code 3 with `data: "0x"`
/// instead (as reth and anvil do), which ethers v6 and viem both recognise as a revert.
pub fn revert_error(data: &[u8]) -> ErrorObjectOwned {
    let message = match decode_revert_reason(data) {
        Some(reason) => format!("execution reverted: {reason}"),
        None => "execution reverted".to_owned(),
    };
    ErrorObjectOwned::owned(
        code::EXECUTION_REVERTED,
        message,
        Some(format!("0x{}", hex::encode(data))),
    )
}

/// The human reason in revert bytes, as geth's `abi.UnpackRevert` gives it: the string of an
/// `Error(string)`, the meaning of a `Panic(uint256)` code, or `None` (custom errors, garbage).
pub fn decode_revert_reason(data: &[u8]) -> Option<String> {
    let (selector, body) = data.split_first_chunk::<4>()?;
    if *selector == ERROR_SELECTOR {
        decode_abi_string(body)
    } else if *selector == PANIC_SELECTOR {
        let word: &[u8; 32] = body.get(..32)?.try_into().ok()?;
        let code = U256::from_be_bytes(*word);
        Some(match u64::try_from(code).ok().and_then(panic_reason) {
            Some(reason) => reason.to_owned(),
            None => format!("unknown panic code: {code:#x}"),
        })
    } else {
        None
    }
}

/// Solidity's panic codes, worded as geth words them.
fn panic_reason(code: u64) -> Option<&'static str> {
    Some(match code {
        0x00 => "generic panic",
        0x01 => "assert(false)",
        0x11 => "arithmetic underflow or overflow",
        0x12 => "division or modulo by zero",
        0x21 => "enum overflow",
        0x22 => "invalid encoded storage byte array accessed",
        0x31 => "out-of-bounds array access; popping on an empty array",
        0x32 => "out-of-bounds access of an array or bytesN",
        0x41 => "out of memory",
        0x51 => "uninitialized function",
        _ => return None,
    })
}

/// Decodes one ABI-encoded `string` argument (head offset, length, bytes), bounds-checked.
fn decode_abi_string(body: &[u8]) -> Option<String> {
    let word = |at: usize| -> Option<usize> {
        let w: &[u8; 32] = body.get(at..at.checked_add(32)?)?.try_into().ok()?;
        usize::try_from(U256::from_be_bytes(*w)).ok()
    };
    let offset = word(0)?;
    let len = word(offset)?;
    let start = offset.checked_add(32)?;
    let bytes = body.get(start..start.checked_add(len)?)?;
    Some(String::from_utf8_lossy(bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_string(reason: &str) -> Vec<u8> {
        let mut v = ERROR_SELECTOR.to_vec();
        v.extend_from_slice(&U256::from(32).to_be_bytes::<32>());
        v.extend_from_slice(&U256::from(reason.len()).to_be_bytes::<32>());
        let mut padded = reason.as_bytes().to_vec();
        padded.resize(reason.len().div_ceil(32) * 32, 0);
        v.extend_from_slice(&padded);
        v
    }

    #[test]
    fn error_string_reason_is_decoded() {
        assert_eq!(
            decode_revert_reason(&error_string("not enough")).as_deref(),
            Some("not enough")
        );
    }

    #[test]
    fn panic_codes_are_worded_as_geth() {
        let mut v = PANIC_SELECTOR.to_vec();
        v.extend_from_slice(&U256::from(0x11).to_be_bytes::<32>());
        assert_eq!(
            decode_revert_reason(&v).as_deref(),
            Some("arithmetic underflow or overflow")
        );
        let mut v = PANIC_SELECTOR.to_vec();
        v.extend_from_slice(&U256::from(0x99).to_be_bytes::<32>());
        assert_eq!(
            decode_revert_reason(&v).as_deref(),
            Some("unknown panic code: 0x99")
        );
    }

    #[test]
    fn truncated_or_custom_revert_data_has_no_reason() {
        let full = error_string("abc");
        // 4 selector + 32 offset + 32 length + 3 bytes of text.
        for cut in 0..4 + 64 + 3 {
            // Shorter than the declared string: no reason, and no panic.
            let r = decode_revert_reason(&full[..cut]);
            assert!(r.is_none(), "cut {cut}: {r:?}");
        }
        assert!(decode_revert_reason(&[0xde, 0xad, 0xbe, 0xef, 1, 2]).is_none());
        let mut huge = ERROR_SELECTOR.to_vec();
        huge.extend_from_slice(&[0xff; 64]);
        assert!(decode_revert_reason(&huge).is_none());
    }

    #[test]
    fn revert_error_has_code_3_and_hex_data() {
        let e = revert_error(&error_string("no"));
        assert_eq!(e.code(), 3);
        assert_eq!(e.message(), "execution reverted: no");
        let data = e.data().map(|d| d.get().to_owned()).unwrap_or_default();
        assert!(data.starts_with("\"0x08c379a0"), "{data}");
    }
}
