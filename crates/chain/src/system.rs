//! System transactions: what the protocol inserts at the start of a block, and every follower
//! recomputes and checks. This module is the one place that lists them and their order.
//!
//! | position | type | what | inputs |
//! | --- | --- | --- | --- |
//! | 0 | `0x7C` | Bitcoin attributes: the pinned Bitcoin tip and the headers since the parent's pin | the sequencer's Bitcoin view (a follower resolves it in its own) |
//! | next | `0x7D` | PoP payout for keystone `n − pop_payout_delay` ([`crate::pop_rewards`]) | Bitcoin up to the pin |
//! | next | `0x7E` | the tunnel's activation: installs `TunnelManager` and `HemiBTC` ([`crate::tunnel`]) | the chain spec (at its activation block only) |
//! | next | `0x7F` × k | `confirmDeposit` for each deposit that reached its confirmations, oldest first ([`crate::tunnel::eligible_deposits`]) | Bitcoin as of the pin, the parent's state |
//! | next | `0x7B` × k | `finalizeWithdrawal` for each custodian payout that did ([`crate::tunnel::eligible_payouts`]) | Bitcoin as of the pin, the parent's state |
//!
//! User transactions follow. Building asks [`SystemInputs::txs`] for the list; import recomputes
//! it from the block's own attributes and our Bitcoin view and [`check`]s the block against it;
//! execution refuses a system transaction anywhere else by its [`SystemTxKind::rule`].

use hemi_hvm::BtcAttributes;

use crate::pop_rewards::PopPayoutTx;
use crate::tunnel::{DepositTx, PayoutTx, TunnelActivationTx};
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
    /// `0x7E`: installs the tunnel's contracts. Only in the tunnel's activation block.
    TunnelActivation,
    /// `0x7F`: confirms one deposit. As many as there are eligible deposits.
    Deposit,
    /// `0x7B`: finalizes one custodian payout. As many as there are eligible payouts.
    Payout,
    /// `0x7A`: the devnet's direct state changes ([`crate::dev`]); not derived from anything,
    /// so not in [`SystemTxKind::ORDER`]: after the protocol's, before user transactions.
    DevState,
}

impl SystemTxKind {
    /// Every kind, in block order.
    pub const ORDER: [SystemTxKind; 5] = [
        SystemTxKind::BtcAttributes,
        SystemTxKind::PopPayout,
        SystemTxKind::TunnelActivation,
        SystemTxKind::Deposit,
        SystemTxKind::Payout,
    ];

    /// The kind of `tx`, or `None` for a user transaction.
    pub fn of(tx: &L2Tx) -> Option<Self> {
        match tx {
            L2Tx::BtcAttributes(_) => Some(SystemTxKind::BtcAttributes),
            L2Tx::PopPayout(_) => Some(SystemTxKind::PopPayout),
            L2Tx::TunnelActivation(_) => Some(SystemTxKind::TunnelActivation),
            L2Tx::Deposit(_) => Some(SystemTxKind::Deposit),
            L2Tx::Payout(_) => Some(SystemTxKind::Payout),
            L2Tx::DevState(_) => Some(SystemTxKind::DevState),
            L2Tx::Eth(_) | L2Tx::Impersonated(_) => None,
        }
    }

    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            SystemTxKind::BtcAttributes => "Bitcoin-attributes",
            SystemTxKind::PopPayout => "PoP payout",
            SystemTxKind::TunnelActivation => "tunnel activation",
            SystemTxKind::Deposit => "deposit confirmation",
            SystemTxKind::Payout => "withdrawal finalization",
            SystemTxKind::DevState => "devnet state change",
        }
    }

    /// Where it must stand, in words (for refusals).
    pub fn rule(self) -> &'static str {
        match self {
            SystemTxKind::BtcAttributes => "it must be first",
            SystemTxKind::PopPayout => "it must follow the attributes",
            SystemTxKind::TunnelActivation
            | SystemTxKind::Deposit
            | SystemTxKind::Payout
            | SystemTxKind::DevState => "system transactions come before user transactions",
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
    /// The tunnel's activation, in its activation block.
    pub tunnel_activation: Option<TunnelActivationTx>,
    /// The deposits the block confirms, in order.
    pub deposits: Vec<DepositTx>,
    /// The custodian payouts the block finalizes, in order.
    pub payouts: Vec<PayoutTx>,
}

impl SystemInputs {
    /// The system transactions, in block order ([`SystemTxKind::ORDER`]).
    pub fn txs(&self) -> Vec<L2Tx> {
        let mut txs = Vec::with_capacity(
            SystemTxKind::ORDER.len() + self.deposits.len() + self.payouts.len(),
        );
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
                SystemTxKind::TunnelActivation => {
                    if let Some(a) = &self.tunnel_activation {
                        txs.push(L2Tx::TunnelActivation(a.clone()));
                    }
                }
                SystemTxKind::Deposit => {
                    txs.extend(self.deposits.iter().map(|d| L2Tx::Deposit(*d)));
                }
                SystemTxKind::Payout => {
                    txs.extend(self.payouts.iter().map(|p| L2Tx::Payout(*p)));
                }
                // Not derived: the devnet's sequencer adds its own.
                SystemTxKind::DevState => {}
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

/// The deposit confirmations among the system transactions at the start of `txs`.
fn deposits_in(txs: &[L2Tx]) -> Vec<DepositTx> {
    txs.iter()
        .take_while(|t| SystemTxKind::of(t).is_some())
        .filter_map(|t| match t {
            L2Tx::Deposit(d) => Some(*d),
            _ => None,
        })
        .collect()
}

fn deposits_differ(number: u64, txs: &[L2Tx], expected: &[L2Tx]) -> BlockError {
    BlockError::Deposits {
        number,
        got: deposits_in(txs),
        expected: deposits_in(expected),
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
/// ([`BlockError::PopPayout`]), other deposits ([`BlockError::Deposits`]), other attributes or
/// activation ([`BlockError::SystemTxMismatch`]).
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
            Some(SystemTxKind::Deposit) => deposits_differ(number, txs, expected),
            Some(kind @ (SystemTxKind::Payout | SystemTxKind::DevState)) => {
                BlockError::SystemTxMismatch {
                    number,
                    kind: kind.name(),
                    index,
                }
            }
            Some(kind @ SystemTxKind::TunnelActivation) => match got {
                Some(L2Tx::Deposit(_)) => deposits_differ(number, txs, expected),
                _ => BlockError::SystemTxMismatch {
                    number,
                    kind: kind.name(),
                    index,
                },
            },
        });
    }
    match txs.get(expected.len()) {
        // A payout where the rule has none.
        Some(tx @ L2Tx::PopPayout(_)) => Err(BlockError::PopPayout {
            number,
            got: payout_summary(Some(tx)),
            expected: None,
        }),
        // A mint the rule does not give.
        Some(L2Tx::Deposit(_)) => Err(deposits_differ(number, txs, expected)),
        Some(tx @ (L2Tx::TunnelActivation(_) | L2Tx::Payout(_))) => {
            Err(BlockError::SystemTxMismatch {
                number,
                kind: SystemTxKind::of(tx).map_or("system", SystemTxKind::name),
                index: expected.len(),
            })
        }
        _ => Ok(()),
    }
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
            tunnel_activation: payout.then(|| TunnelActivationTx {
                vault_output_key: B256::repeat_byte(1),
                deposit_fee: 1,
                min_deposit: 2,
                deposit_confirmations: 3,
                withdrawal_deadline: 50,
            }),
            payouts: if payout {
                vec![PayoutTx {
                    txid: B256::repeat_byte(3),
                }]
            } else {
                vec![]
            },
            deposits: if payout {
                vec![DepositTx {
                    txid: B256::repeat_byte(2),
                    vout: 0,
                }]
            } else {
                vec![]
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

        // A mint the rule does not give, or one left out.
        let mut only_payout = inputs(true);
        only_payout.tunnel_activation = None;
        only_payout.deposits.clear();
        let only_payout = only_payout.txs();
        let mut extra = only_payout.clone();
        extra.push(with[3].clone());
        assert!(matches!(
            check(9, &extra, &only_payout),
            Err(BlockError::Deposits { ref got, ref expected, .. }) if got.len() == 1 && expected.is_empty()
        ));
        let mut skipped = with.clone();
        skipped.remove(3);
        assert!(matches!(
            check(9, &skipped, &with),
            Err(BlockError::Deposits { ref got, ref expected, .. }) if got.is_empty() && expected.len() == 1
        ));

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
