//! System transactions: what the protocol inserts at the start of a block, and every follower
//! recomputes and checks. This module is the one place that lists them and their order.
//!
//! | position | type | what | inputs |
//! | --- | --- | --- | --- |
//! | 0 | `0x7C` | Bitcoin attributes: the pinned Bitcoin tip and the headers since the parent's pin | the sequencer's Bitcoin view (a follower resolves it in its own) |
//! | next | `0x7D` | PoP payout for keystone `n − pop_payout_delay` ([`crate::pop_rewards`]) | Bitcoin up to the pin |
//!
//! User transactions follow. Building asks [`SystemInputs::txs`] for the list; import recomputes
//! it from the block's own attributes and our Bitcoin view and [`check`]s the block against it;
//! execution refuses a system transaction anywhere else by its [`SystemTxKind::rule`]. A new
//! system transaction (the tunnel's mint) is added here once, for both.

use hemi_hvm::BtcAttributes;

use crate::pop_rewards::PopPayoutTx;
use crate::tx::{BtcAttributesTx, L2Tx};
use crate::{BlockError, ChainError, PayoutSummary};

/// The kinds of system transaction, in the order a block carries them.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemTxKind {
    /// `0x7C`: pins the Bitcoin view the block executes against. Every block has one, first.
    BtcAttributes,
    /// `0x7D`: pays a keystone's PoP miners. Only in the block the payout delay names.
    PopPayout,
}

impl SystemTxKind {
    /// Every kind, in block order.
    pub const ORDER: [SystemTxKind; 2] = [SystemTxKind::BtcAttributes, SystemTxKind::PopPayout];

    /// The kind of `tx`, or `None` for a user transaction.
    pub fn of(tx: &L2Tx) -> Option<Self> {
        match tx {
            L2Tx::BtcAttributes(_) => Some(SystemTxKind::BtcAttributes),
            L2Tx::PopPayout(_) => Some(SystemTxKind::PopPayout),
            L2Tx::Eth(_) => None,
        }
    }

    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            SystemTxKind::BtcAttributes => "Bitcoin-attributes",
            SystemTxKind::PopPayout => "PoP payout",
        }
    }

    /// Where it must stand, in words (for refusals).
    pub fn rule(self) -> &'static str {
        match self {
            SystemTxKind::BtcAttributes => "it must be first",
            SystemTxKind::PopPayout => "it must follow the attributes",
        }
    }
}

/// What a block's system transactions are made from: the chain gathers it
/// ([`crate::Chain::system_inputs`]) from its own records and the block's Bitcoin view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInputs {
    /// The Bitcoin attributes the block pins.
    pub attrs: BtcAttributes,
    /// The PoP payout due in the block, if any.
    pub payout: Option<PopPayoutTx>,
}

impl SystemInputs {
    /// The system transactions, in block order ([`SystemTxKind::ORDER`]).
    pub fn txs(&self) -> Vec<L2Tx> {
        let mut txs = Vec::with_capacity(SystemTxKind::ORDER.len());
        for kind in SystemTxKind::ORDER {
            match kind {
                SystemTxKind::BtcAttributes => {
                    txs.push(L2Tx::BtcAttributes(BtcAttributesTx::new(&self.attrs)))
                }
                SystemTxKind::PopPayout => {
                    if let Some(p) = &self.payout {
                        txs.push(L2Tx::PopPayout(p.clone()));
                    }
                }
            }
        }
        txs
    }
}

/// The Bitcoin attributes block `number` carries (its first transaction).
///
/// # Errors
/// [`BlockError::MissingAttributes`] when the block does not begin with them; their decoding
/// error when the calldata is not canonical.
pub fn attributes_of(number: u64, txs: &[L2Tx]) -> Result<BtcAttributes, ChainError> {
    match txs.first() {
        Some(L2Tx::BtcAttributes(a)) => a.attributes(),
        _ => Err(BlockError::MissingAttributes { number }.into()),
    }
}

fn payout_summary(tx: Option<&L2Tx>) -> Option<PayoutSummary> {
    match tx {
        Some(L2Tx::PopPayout(p)) => Some(PayoutSummary {
            keystone: p.keystone,
            publications: p.payouts.len(),
        }),
        _ => None,
    }
}

/// Checks that block `number`'s transactions `txs` begin with the system transactions
/// `expected` (what [`SystemInputs::txs`] gives for it), and that no payout stands right after
/// them where none is due. A system transaction further down is refused by execution, in its
/// place ([`BlockError::SystemTxPosition`]), as before this check existed: a block breaking
/// several rules gets the same refusal as it always did.
///
/// The attributes transaction is compared by its calldata (the pin and headers); its `to` and
/// `gas` fields are not read by execution and are not checked, as before.
///
/// # Errors
/// The [`BlockError`] naming the first difference: a payout that differs from the rule's
/// ([`BlockError::PopPayout`]), other attributes ([`BlockError::SystemTxMismatch`]).
pub fn check(number: u64, txs: &[L2Tx], expected: &[L2Tx]) -> Result<(), BlockError> {
    for (index, want) in expected.iter().enumerate() {
        let got = txs.get(index);
        let same = match (got, want) {
            (Some(L2Tx::BtcAttributes(g)), L2Tx::BtcAttributes(w)) => g.data == w.data,
            (got, want) => got == Some(want),
        };
        if same {
            continue;
        }
        return Err(match SystemTxKind::of(want) {
            Some(SystemTxKind::BtcAttributes) | None => match got {
                Some(L2Tx::BtcAttributes(_)) => BlockError::SystemTxMismatch {
                    number,
                    kind: SystemTxKind::BtcAttributes.name(),
                    index,
                },
                _ => BlockError::MissingAttributes { number },
            },
            Some(SystemTxKind::PopPayout) => BlockError::PopPayout {
                number,
                got: payout_summary(got),
                expected: payout_summary(Some(want)),
            },
        });
    }
    if let Some(tx @ L2Tx::PopPayout(_)) = txs.get(expected.len()) {
        // A payout where the rule has none.
        return Err(BlockError::PopPayout {
            number,
            got: payout_summary(Some(tx)),
            expected: None,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{Address, B256, U256};
    use bitcoin::hashes::Hash;

    use super::*;
    use crate::pop_rewards::PopPayout;

    fn inputs(payout: bool) -> SystemInputs {
        SystemInputs {
            attrs: BtcAttributes {
                canonical_tip: bitcoin::BlockHash::all_zeros(),
                headers: vec![],
            },
            payout: payout.then(|| PopPayoutTx {
                keystone: 5,
                payouts: vec![PopPayout {
                    miner: Address::repeat_byte(7),
                    amount: U256::from(1_000u64),
                    relative_height: 0,
                    bitcoin_txid: B256::repeat_byte(9),
                }],
            }),
        }
    }

    #[test]
    fn the_system_transactions_come_first_in_their_order_and_nowhere_else() {
        let with = inputs(true).txs();
        assert_eq!(
            with.iter().filter_map(SystemTxKind::of).collect::<Vec<_>>(),
            SystemTxKind::ORDER
        );
        assert_eq!(check(9, &with, &with), Ok(()));
        let without = inputs(false).txs();
        assert_eq!(without.len(), 1);
        assert_eq!(check(9, &without, &without), Ok(()));

        // A payout where the rule has none, and none where it has one.
        assert_eq!(
            check(9, &with, &without).map_err(|e| e.to_string()),
            Err(
                "block 9: its PoP payout pays keystone 5 to 1 publication(s), but Bitcoin up \
                 to the pinned block says nothing"
                    .to_string()
            )
        );
        assert_eq!(
            check(9, &without, &with).map_err(|e| e.to_string()),
            Err(
                "block 9: its PoP payout pays nothing, but Bitcoin up to the pinned block says \
                 keystone 5 to 1 publication(s)"
                    .to_string()
            )
        );

        // Attributes pinning another block, or none; `gas` is not read by execution and is
        // not checked (as before this module existed).
        let mut other_pin = inputs(false);
        other_pin.attrs.canonical_tip = bitcoin::BlockHash::from_byte_array([1; 32]);
        assert!(matches!(
            check(9, &other_pin.txs(), &without),
            Err(BlockError::SystemTxMismatch { index: 0, .. })
        ));
        let mut other_gas = without.clone();
        if let L2Tx::BtcAttributes(a) = &mut other_gas[0] {
            a.gas += 1;
        }
        assert_eq!(check(9, &other_gas, &without), Ok(()));
        assert_eq!(
            check(9, &[], &without),
            Err(BlockError::MissingAttributes { number: 9 })
        );
    }
}
