//! The devnet's direct state changes (anvil's `anvil_setBalance`, `anvil_setNonce`,
//! `anvil_setCode`, `anvil_setStorageAt`): a system transaction of type `0x7A` that the devnet's
//! sequencer puts in a block it makes at once, so followers re-execute the same change and the
//! roots stay checkable. Only a chain whose spec allows it (`devState`: a regtest devnet) takes
//! it; every other node refuses such a block.
//!
//! `0x7A ‖ rlp([block number, [[address, kind, key, value], …]])`, kind 0 balance (value: 32
//! bytes), 1 nonce (8 bytes), 2 code (at most 24,576 bytes), 3 storage (key: the slot, value:
//! 32 bytes). The block number keeps two identical changes in two blocks apart.

use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_rlp::{RlpDecodable, RlpEncodable};

use crate::{BlockError, ChainError};

/// The type byte.
pub const DEV_STATE_TX_TYPE: u8 = 0x7A;
/// Largest code `anvil_setCode` may set (EIP-170).
pub const MAX_DEV_CODE: usize = 24_576;
/// Most changes in one transaction.
pub const MAX_DEV_CHANGES: usize = 1_024;

/// One change.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct DevChange {
    /// The account.
    pub address: Address,
    /// 0 balance, 1 nonce, 2 code, 3 storage.
    pub kind: u8,
    /// The storage slot (kind 3; zero otherwise).
    pub key: B256,
    /// The new value.
    pub value: Bytes,
}

/// What a change does, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DevOp {
    /// Set the balance, wei.
    Balance(U256),
    /// Set the nonce.
    Nonce(u64),
    /// Set the code.
    Code(Bytes),
    /// Set a storage slot.
    Storage(U256, U256),
}

impl DevChange {
    /// A change of `address` doing `op`.
    pub fn new(address: Address, op: DevOp) -> Self {
        let (kind, key, value) = match op {
            DevOp::Balance(b) => (0, B256::ZERO, Bytes::from(b.to_be_bytes::<32>().to_vec())),
            DevOp::Nonce(n) => (1, B256::ZERO, Bytes::from(n.to_be_bytes().to_vec())),
            DevOp::Code(c) => (2, B256::ZERO, c),
            DevOp::Storage(k, v) => (
                3,
                B256::from(k.to_be_bytes::<32>()),
                Bytes::from(v.to_be_bytes::<32>().to_vec()),
            ),
        };
        DevChange {
            address,
            kind,
            key,
            value,
        }
    }

    /// What it does.
    ///
    /// # Errors
    /// [`BlockError::DevState`] for an unknown kind or a value of the wrong length.
    pub fn op(&self) -> Result<DevOp, ChainError> {
        let bad = |why: String| ChainError::from(BlockError::DevState(why));
        let word = || -> Result<U256, ChainError> {
            let b: [u8; 32] = self.value.as_ref().try_into().map_err(|_| {
                bad(format!(
                    "kind {} takes a 32-byte value, got {}",
                    self.kind,
                    self.value.len()
                ))
            })?;
            Ok(U256::from_be_bytes(b))
        };
        match self.kind {
            0 => Ok(DevOp::Balance(word()?)),
            1 => {
                let b: [u8; 8] =
                    self.value.as_ref().try_into().map_err(|_| {
                        bad(format!("a nonce is 8 bytes, got {}", self.value.len()))
                    })?;
                Ok(DevOp::Nonce(u64::from_be_bytes(b)))
            }
            2 if self.value.len() <= MAX_DEV_CODE => {
                // Code starting 0xEF01 must be a well-formed EIP-7702 delegation.
                revm::state::Bytecode::new_raw_checked(self.value.clone())
                    .map_err(|e| bad(format!("code: {e}")))?;
                Ok(DevOp::Code(self.value.clone()))
            }
            2 => Err(bad(format!(
                "code of {} bytes is above {MAX_DEV_CODE}",
                self.value.len()
            ))),
            3 => Ok(DevOp::Storage(U256::from_be_bytes(self.key.0), word()?)),
            k => Err(bad(format!("unknown change kind {k}"))),
        }
    }
}

/// The `0x7A` transaction.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct DevStateTx {
    /// The block it is in.
    pub number: u64,
    /// The changes, applied in order.
    pub changes: Vec<DevChange>,
}

/// Applies `tx` to `db` (the block's state, after the protocol's system transactions).
///
/// # Errors
/// [`BlockError::DevState`] for a malformed change; database errors.
pub(crate) fn apply<DB>(db: &mut DB, tx: &DevStateTx) -> Result<(), ChainError>
where
    DB: revm::Database<Error = revm::database_interface::bal::EvmDatabaseError<ChainError>>
        + revm::DatabaseCommit,
{
    use revm::state::{Account, Bytecode, EvmStorageSlot, TransactionId};
    if tx.changes.len() > MAX_DEV_CHANGES {
        return Err(BlockError::DevState(format!(
            "{} changes, at most {MAX_DEV_CHANGES}",
            tx.changes.len()
        ))
        .into());
    }
    // One commit per change: later changes of one account see the earlier ones.
    for change in &tx.changes {
        let op = change.op()?;
        let address = change.address;
        let mut info = db
            .basic(address)
            .map_err(crate::exec::db_error)?
            .unwrap_or_default();
        let mut storage = Vec::new();
        match op {
            DevOp::Balance(b) => info.balance = b,
            DevOp::Nonce(n) => info.nonce = n,
            DevOp::Code(code) => {
                let code = Bytecode::new_raw_checked(code)
                    .map_err(|e| BlockError::DevState(format!("code: {e}")))?;
                info.code_hash = code.hash_slow();
                info.code = Some(code);
            }
            DevOp::Storage(slot, value) => {
                let before = db.storage(address, slot).map_err(crate::exec::db_error)?;
                storage.push((
                    slot,
                    EvmStorageSlot::new_changed(before, value, TransactionId::ZERO),
                ));
            }
        }
        let empty = info.is_empty();
        let mut account = Account::from(info)
            .with_storage(storage.into_iter())
            .with_touched_mark();
        if empty {
            // An account with no code, nonce or balance would be cleared as touched-empty
            // (EIP-161) and lose the slot: it is written as newly created instead (which starts
            // its storage afresh, as anvil's writes to such an account in effect do not last
            // either once Ethereum's rules touch it).
            account.mark_created();
        }
        let mut changes = revm::primitives::HashMap::default();
        changes.insert(address, account);
        db.commit(changes);
    }
    Ok(())
}
