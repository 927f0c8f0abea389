//! Parameter parsing as geth does it: positional arguments, trailing ones optional, `null` as
//! absent; quantities as 0x-hex; block parameters as tags, numbers or EIP-1898 objects. Errors
//! carry geth's wording ("missing value for required argument 0", "invalid argument 1: …").

use alloy_primitives::{Address, B256, U256};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::backend::{EthBackend, StateAt, Tag};
use super::errors::{header_not_found, invalid_params, server_error};

/// A block as a request names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockParam {
    /// `"latest"`, `"pending"`, `"earliest"`, `"safe"`, `"finalized"`.
    Tag(Tag),
    /// A number (`"0x1b"`, or `{"blockNumber": "0x1b"}`).
    Number(u64),
    /// A hash (`{"blockHash": …, "requireCanonical": …}`, or a bare 32-byte hash string).
    Hash {
        /// The block hash.
        hash: B256,
        /// EIP-1898 `requireCanonical`; the backend only knows canonical blocks, so it changes
        /// nothing here.
        require_canonical: bool,
    },
}

impl BlockParam {
    /// `"latest"`.
    pub const LATEST: BlockParam = BlockParam::Tag(Tag::Latest);
    /// `"pending"`.
    pub const PENDING: BlockParam = BlockParam::Tag(Tag::Pending);

    /// Parses a block number or tag (no hash), as `eth_getBlockByNumber` takes it.
    ///
    /// # Errors
    /// The value is not a tag or a 0x-hex number; the message says why.
    pub fn number_or_tag(v: &Value) -> Result<BlockParam, String> {
        match v {
            Value::String(s) => parse_tag_or_number(s),
            Value::Number(n) => n
                .as_u64()
                .map(BlockParam::Number)
                .ok_or_else(|| "block number must be a non-negative integer".to_owned()),
            _ => Err("block number must be a hex string or a tag".to_owned()),
        }
    }

    /// Parses an EIP-1898 block parameter: a tag, a number, a hash string, or an object
    /// `{blockNumber}` / `{blockHash, requireCanonical}`.
    ///
    /// # Errors
    /// The value has none of these shapes; the message says why.
    pub fn number_or_hash(v: &Value) -> Result<BlockParam, String> {
        match v {
            Value::String(s) if s.len() == 66 => parse_hash(s).map(|hash| BlockParam::Hash {
                hash,
                require_canonical: false,
            }),
            Value::Object(map) => {
                let number = map.get("blockNumber").filter(|v| !v.is_null());
                let hash = map.get("blockHash").filter(|v| !v.is_null());
                if let Some(k) = map.keys().find(|k| {
                    !matches!(k.as_str(), "blockNumber" | "blockHash" | "requireCanonical")
                }) {
                    return Err(format!("unknown field {k:?} in block parameter"));
                }
                match (number, hash) {
                    (Some(_), Some(_)) => Err(
                        "cannot specify both BlockHash and BlockNumber, choose one or the other"
                            .to_owned(),
                    ),
                    (Some(n), None) => BlockParam::number_or_tag(n),
                    (None, Some(h)) => {
                        let hash = h
                            .as_str()
                            .ok_or_else(|| "blockHash must be a hex string".to_owned())
                            .and_then(parse_hash)?;
                        let require_canonical = match map.get("requireCanonical") {
                            None | Some(Value::Null) => false,
                            Some(Value::Bool(b)) => *b,
                            Some(_) => return Err("requireCanonical must be a boolean".to_owned()),
                        };
                        Ok(BlockParam::Hash {
                            hash,
                            require_canonical,
                        })
                    }
                    (None, None) => {
                        Err("either blockHash or blockNumber must be specified".to_owned())
                    }
                }
            }
            other => BlockParam::number_or_tag(other),
        }
    }
}

fn parse_tag_or_number(s: &str) -> Result<BlockParam, String> {
    Ok(BlockParam::Tag(match s {
        "latest" => Tag::Latest,
        "pending" => Tag::Pending,
        "earliest" => Tag::Earliest,
        "safe" => Tag::Safe,
        "finalized" => Tag::Finalized,
        _ => {
            let n = parse_hex_u64(s)?;
            if n > i64::MAX as u64 {
                return Err("block number larger than int64".to_owned());
            }
            return Ok(BlockParam::Number(n));
        }
    }))
}

fn parse_hash(s: &str) -> Result<B256, String> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or_else(|| "hex string without 0x prefix".to_owned())?;
    let bytes = hex::decode(digits).map_err(|_| "invalid hex string".to_owned())?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map(B256::from)
        .map_err(|_| "hex string has length mismatch, want 64 for common.Hash".to_owned())
}

/// Parses a 0x-hex quantity into a `u64` (geth's `hexutil.Uint64` wording on failure).
///
/// # Errors
/// No 0x prefix, no digits, a non-hex digit, or more than 64 bits.
pub fn parse_hex_u64(s: &str) -> Result<u64, String> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .ok_or_else(|| "hex string without 0x prefix".to_owned())?;
    if digits.is_empty() {
        return Err("hex string \"0x\"".to_owned());
    }
    if digits.len() > 16 {
        return Err("hex number > 64 bits".to_owned());
    }
    u64::from_str_radix(digits, 16).map_err(|_| "invalid hex string".to_owned())
}

/// A quantity given as 0x-hex, a decimal string, or a JSON number (geth's
/// `math.HexOrDecimal64`, used by `eth_feeHistory`'s block count).
///
/// # Errors
/// None of these shapes, or more than 64 bits.
pub fn parse_hex_or_decimal_u64(v: &Value) -> Result<u64, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| "expected a non-negative integer".to_owned()),
        Value::String(s) if s.starts_with("0x") || s.starts_with("0X") => parse_hex_u64(s),
        Value::String(s) => s
            .parse::<u64>()
            .map_err(|_| format!("invalid hex or decimal integer {s:?}")),
        _ => Err("expected a hex or decimal integer".to_owned()),
    }
}

/// A storage key as geth's `decodeHash` takes it: 0x-hex of at most 32 bytes, left-padded.
///
/// # Errors
/// Not hex, or longer than 32 bytes.
pub fn parse_storage_key(v: &Value) -> Result<B256, String> {
    let s = v
        .as_str()
        .ok_or_else(|| "storage key must be a hex string".to_owned())?;
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if digits.len() > 64 {
        return Err("hex string too long, want at most 32 bytes".to_owned());
    }
    let padded = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits.to_owned()
    };
    let bytes = hex::decode(padded).map_err(|_| "hex string invalid".to_owned())?;
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    Ok(B256::from(out))
}

/// The positional arguments of one call, with geth's arity checks.
#[derive(Debug)]
pub struct Args(Vec<Value>);

impl Args {
    /// Reads `params` as an array of at most `max` values (`[]` when absent).
    ///
    /// # Errors
    /// `-32602` when `params` is not an array or has more than `max` values.
    pub fn parse(params: &Params, max: usize) -> Result<Args, ErrorObjectOwned> {
        let values: Vec<Value> = match params.as_str() {
            None => Vec::new(),
            Some(raw) => match serde_json::from_str::<Value>(raw) {
                Ok(Value::Array(v)) => v,
                Ok(Value::Null) => Vec::new(),
                Ok(_) => return Err(invalid_params("non-array args")),
                Err(e) => return Err(invalid_params(e.to_string())),
            },
        };
        if values.len() > max {
            return Err(invalid_params(format!(
                "too many arguments, want at most {max}"
            )));
        }
        Ok(Args(values))
    }

    /// Argument `i`, or `None` when absent or `null`.
    pub fn get(&self, i: usize) -> Option<&Value> {
        self.0.get(i).filter(|v| !v.is_null())
    }

    /// Argument `i`, required.
    ///
    /// # Errors
    /// `-32602` "missing value for required argument i".
    pub fn value(&self, i: usize) -> Result<&Value, ErrorObjectOwned> {
        self.get(i)
            .ok_or_else(|| invalid_params(format!("missing value for required argument {i}")))
    }

    /// Argument `i` deserialised as `T`, required.
    ///
    /// # Errors
    /// `-32602` when absent or of the wrong shape.
    pub fn req<T: DeserializeOwned>(&self, i: usize) -> Result<T, ErrorObjectOwned> {
        let v = self.value(i)?;
        serde_json::from_value(v.clone()).map_err(|e| invalid_arg(i, e))
    }

    /// Argument `i` deserialised as `T`, if present.
    ///
    /// # Errors
    /// `-32602` when of the wrong shape.
    pub fn opt<T: DeserializeOwned>(&self, i: usize) -> Result<Option<T>, ErrorObjectOwned> {
        self.get(i)
            .map(|v| serde_json::from_value(v.clone()).map_err(|e| invalid_arg(i, e)))
            .transpose()
    }

    /// Argument `i` parsed with `f`, required.
    ///
    /// # Errors
    /// `-32602` when absent or when `f` fails.
    pub fn with<T>(
        &self,
        i: usize,
        f: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Result<T, ErrorObjectOwned> {
        f(self.value(i)?).map_err(|e| invalid_arg(i, e))
    }

    /// Argument `i` parsed with `f`, or `default` when absent.
    ///
    /// # Errors
    /// `-32602` when `f` fails.
    pub fn with_or<T>(
        &self,
        i: usize,
        default: T,
        f: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Result<T, ErrorObjectOwned> {
        match self.get(i) {
            None => Ok(default),
            Some(v) => f(v).map_err(|e| invalid_arg(i, e)),
        }
    }

    /// Argument `i` as an address, required.
    ///
    /// # Errors
    /// `-32602` when absent or not a 20-byte 0x-hex string.
    pub fn address(&self, i: usize) -> Result<Address, ErrorObjectOwned> {
        self.with(i, |v| {
            let s = v.as_str().ok_or("address must be a hex string")?;
            if !s.starts_with("0x") && !s.starts_with("0X") {
                return Err("hex string without 0x prefix".to_owned());
            }
            s.parse::<Address>().map_err(|_| {
                "hex string has length mismatch, want 40 for common.Address".to_owned()
            })
        })
    }

    /// Argument `i` as an EIP-1898 block parameter, or `default` when absent.
    ///
    /// # Errors
    /// `-32602` when malformed.
    pub fn block_or(&self, i: usize, default: BlockParam) -> Result<BlockParam, ErrorObjectOwned> {
        self.with_or(i, default, BlockParam::number_or_hash)
    }
}

fn invalid_arg(i: usize, e: impl std::fmt::Display) -> ErrorObjectOwned {
    invalid_params(format!("invalid argument {i}: {e}"))
}

/// The state a read at `block` is answered from.
///
/// # Errors
/// `-32000` "header not found" for a number above the head, "header for hash not found" for an
/// unknown hash; the backend's own error otherwise.
pub fn resolve_state(
    backend: &dyn EthBackend,
    block: BlockParam,
) -> Result<StateAt, ErrorObjectOwned> {
    match block {
        BlockParam::Tag(Tag::Pending) => Ok(StateAt::Pending),
        BlockParam::Tag(t) => Ok(StateAt::Block(backend.tag(t))),
        BlockParam::Number(n) if n > backend.tag(Tag::Latest) => Err(header_not_found()),
        BlockParam::Number(n) => Ok(StateAt::Block(n)),
        BlockParam::Hash { hash, .. } => match backend
            .block_number_by_hash(hash)
            .map_err(super::errors::backend_error)?
        {
            Some(n) => Ok(StateAt::Block(n)),
            None => Err(server_error("header for hash not found")),
        },
    }
}

/// The number of the block a block read names, or `None` when there is no such block (the
/// caller answers `null`).
///
/// # Errors
/// The backend's error looking a hash up.
pub fn resolve_number(
    backend: &dyn EthBackend,
    block: BlockParam,
) -> Result<Option<u64>, ErrorObjectOwned> {
    match block {
        BlockParam::Tag(t) => Ok(Some(backend.tag(t))),
        BlockParam::Number(n) if n > backend.tag(Tag::Latest) => Ok(None),
        BlockParam::Number(n) => Ok(Some(n)),
        BlockParam::Hash { hash, .. } => backend
            .block_number_by_hash(hash)
            .map_err(super::errors::backend_error),
    }
}

/// A quantity as geth writes it: 0x-hex without leading zeros.
pub fn quantity(n: u64) -> Value {
    Value::String(format!("0x{n:x}"))
}

/// A 256-bit quantity as geth writes it.
pub fn quantity_u256(n: U256) -> Value {
    Value::String(format!("{n:#x}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tags_numbers_and_eip1898_objects_parse() {
        let h = format!("0x{}", "ab".repeat(32));
        assert_eq!(
            BlockParam::number_or_hash(&json!("latest")),
            Ok(BlockParam::LATEST)
        );
        assert_eq!(
            BlockParam::number_or_hash(&json!("safe")),
            Ok(BlockParam::Tag(Tag::Safe))
        );
        assert_eq!(
            BlockParam::number_or_hash(&json!("0x1b")),
            Ok(BlockParam::Number(27))
        );
        assert_eq!(
            BlockParam::number_or_hash(&json!({"blockNumber": "0x2"})),
            Ok(BlockParam::Number(2))
        );
        assert_eq!(
            BlockParam::number_or_hash(&json!({"blockHash": h, "requireCanonical": true})),
            Ok(BlockParam::Hash {
                hash: B256::repeat_byte(0xab),
                require_canonical: true
            })
        );
        assert_eq!(
            BlockParam::number_or_hash(&json!(h)),
            Ok(BlockParam::Hash {
                hash: B256::repeat_byte(0xab),
                require_canonical: false
            })
        );
        assert!(BlockParam::number_or_hash(&json!("12")).is_err());
        assert!(BlockParam::number_or_hash(&json!("0x")).is_err());
        assert!(BlockParam::number_or_hash(&json!("0xzz")).is_err());
        assert!(BlockParam::number_or_hash(&json!({})).is_err());
        assert!(
            BlockParam::number_or_hash(&json!({"blockNumber": "0x1", "blockHash": h})).is_err()
        );
        assert!(BlockParam::number_or_tag(&json!(h)).is_err());
    }

    #[test]
    fn storage_keys_are_left_padded() {
        assert_eq!(parse_storage_key(&json!("0x0")), Ok(B256::ZERO));
        assert_eq!(
            parse_storage_key(&json!("0x1")),
            Ok(B256::with_last_byte(1))
        );
        assert!(parse_storage_key(&json!(format!("0x{}", "0".repeat(66)))).is_err());
        assert!(parse_storage_key(&json!("0xg")).is_err());
    }

    #[test]
    fn quantities_have_no_leading_zeros() {
        assert_eq!(quantity(0), json!("0x0"));
        assert_eq!(quantity(255), json!("0xff"));
        assert_eq!(quantity_u256(U256::from(16)), json!("0x10"));
    }
}
