//! What a custodian agrees to sign. Before it commits to a signing round it checks the
//! transaction against the L2 node it trusts ([`TunnelPolicy`] over a [`TunnelView`]):
//!
//! - a **payout** (one or more `HEMW` id lists) spends only vault outputs through the key path
//!   and pays, in id order, each listed request that `hemi_getWithdrawal` says is pending: to
//!   its script, a value in `[amount − maxFee, amount]`; every other output is the id lists
//!   (zero value) or change to the vault;
//! - a **sweep** (the `HEMS` tag) spends only taproot deposits through their deposit leaf (whose
//!   key is the vault's output key) that `hemi_getDeposit(txid, vout)` says are minted, for the
//!   value the node indexed, and pays only the vault (and the zero-value tag), with a fee no
//!   more than the tunnel fees those deposits paid on L2.
//!
//! First of all the node must run this vault (`hemi_getTunnel`'s output key): a node on another
//! vault would have this one pay its withdrawals. Anything else is refused, with the reason.

use std::collections::BTreeSet;
use std::time::Duration;

use bitcoin::{OutPoint, ScriptBuf};
use hemi_tunnel::payout::parse_id_list;
use hemi_tunnel::sweep::{is_sweep, sweep_tag_script};
use hemi_tunnel::Vault;
use serde_json::{json, Value};

use crate::client::{RpcClient, RpcError};
use crate::request::{deposit_leaf_key, SignRequest};

/// Why a custodian refuses a transaction.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Neither a payout nor a sweep.
    #[error("neither a payout (no HEMW id list) nor a sweep (no HEMS tag)")]
    NotTunnel,
    /// Both an id list and a sweep tag.
    #[error("both a payout's id list and a sweep's tag")]
    Ambiguous,
    /// An input the rules do not allow.
    #[error("input {input}: {reason}")]
    Input {
        /// The input.
        input: usize,
        /// Why.
        reason: String,
    },
    /// An output the rules do not allow.
    #[error("output {output}: {reason}")]
    Output {
        /// The output.
        output: usize,
        /// Why.
        reason: String,
    },
    /// A withdrawal request is not payable as the transaction pays it.
    #[error("withdrawal {id}: {reason}")]
    Withdrawal {
        /// The request.
        id: u32,
        /// Why.
        reason: String,
    },
    /// A deposit is not sweepable.
    #[error("deposit {outpoint}: {reason}")]
    Deposit {
        /// The deposit output.
        outpoint: OutPoint,
        /// Why.
        reason: String,
    },
    /// The node could not be asked.
    #[error("the L2 node: {0}")]
    Node(#[from] RpcError),
    /// A fixed refusal ([`FixedPolicy::refuse`]).
    #[error("refused: {0}")]
    Refused(String),
}

/// Decides whether a custodian may sign a request.
#[async_trait::async_trait]
pub trait Policy: Send + Sync {
    /// `Ok` if the custodians' vault `vault` may sign `request`.
    ///
    /// # Errors
    /// [`PolicyError`] naming why not.
    async fn check(&self, request: &SignRequest, vault: &Vault) -> Result<(), PolicyError>;
}

/// A withdrawal request as the node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withdrawal {
    /// `pending`, `paid`, `challenged` or `unknown`.
    pub status: String,
    /// Where it is to be paid.
    pub script: ScriptBuf,
    /// hemiBTC burnt, satoshis.
    pub amount: u64,
    /// The most fee it pays, satoshis.
    pub max_fee: u64,
}

/// A deposit as the node reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositStatus {
    /// `minted`, `confirming`, `eligible`, `refused`, `unknown`, …
    pub status: String,
    /// The deposit output's index.
    pub vout: Option<u32>,
    /// Its value, satoshis.
    pub amount: Option<u64>,
    /// `taproot`, `opReturnAddress`, `opReturnHex`.
    pub format: Option<String>,
    /// The tunnel fee it paid when minted, satoshis.
    pub fee: Option<u64>,
}

/// What the policy asks the node.
#[async_trait::async_trait]
pub trait TunnelView: Send + Sync {
    /// `hemi_getWithdrawal(id)`.
    ///
    /// # Errors
    /// [`PolicyError::Node`] if the node cannot answer.
    async fn withdrawal(&self, id: u32) -> Result<Withdrawal, PolicyError>;

    /// `hemi_getDeposit(txid, vout)`.
    ///
    /// # Errors
    /// [`PolicyError::Node`] if the node cannot answer.
    async fn deposit(&self, outpoint: OutPoint) -> Result<DepositStatus, PolicyError>;

    /// The vault output key the node's tunnel runs (`hemi_getTunnel`'s `vaultOutputKey`).
    ///
    /// # Errors
    /// [`PolicyError::Node`] if the node cannot answer.
    async fn vault_output_key(&self) -> Result<bitcoin::XOnlyPublicKey, PolicyError>;
}

/// The node's JSON-RPC.
#[derive(Debug, Clone)]
pub struct NodeView {
    client: RpcClient,
}

impl NodeView {
    /// The node at `url`.
    pub fn new(url: &str, timeout: Duration) -> Self {
        NodeView {
            client: RpcClient::new(url, timeout),
        }
    }
}

/// A u64 the node wrote as a number, a decimal string or a 0x-hex string.
fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => match s.strip_prefix("0x") {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => s.parse().ok(),
        },
        _ => None,
    }
}

fn decode_err(client: &RpcClient, method: &str, reason: &str) -> PolicyError {
    PolicyError::Node(RpcError::Decode {
        url: client.url().to_string(),
        method: method.to_string(),
        reason: reason.to_string(),
    })
}

#[async_trait::async_trait]
impl TunnelView for NodeView {
    async fn withdrawal(&self, id: u32) -> Result<Withdrawal, PolicyError> {
        const M: &str = "hemi_getWithdrawal";
        let v: Value = self.client.call(M, json!([id])).await?;
        let status = v
            .get("status")
            .and_then(Value::as_str)
            .ok_or_else(|| decode_err(&self.client, M, "no status"))?
            .to_string();
        if status == "unknown" {
            return Ok(Withdrawal {
                status,
                script: ScriptBuf::new(),
                amount: 0,
                max_fee: 0,
            });
        }
        let script = v
            .get("script")
            .and_then(Value::as_str)
            .and_then(|s| hex::decode(s.trim_start_matches("0x")).ok())
            .ok_or_else(|| decode_err(&self.client, M, "no script hex"))?;
        let amount = v
            .get("amount")
            .and_then(as_u64)
            .ok_or_else(|| decode_err(&self.client, M, "no amount"))?;
        let max_fee = v
            .get("maxFee")
            .and_then(as_u64)
            .ok_or_else(|| decode_err(&self.client, M, "no maxFee"))?;
        Ok(Withdrawal {
            status,
            script: ScriptBuf::from_bytes(script),
            amount,
            max_fee,
        })
    }

    async fn deposit(&self, outpoint: OutPoint) -> Result<DepositStatus, PolicyError> {
        const M: &str = "hemi_getDeposit";
        let v: Value = self
            .client
            .call(M, json!([outpoint.txid.to_string(), outpoint.vout]))
            .await?;
        Ok(DepositStatus {
            status: v
                .get("status")
                .and_then(Value::as_str)
                .ok_or_else(|| decode_err(&self.client, M, "no status"))?
                .to_string(),
            vout: v
                .get("vout")
                .and_then(as_u64)
                .and_then(|n| u32::try_from(n).ok()),
            amount: v.get("amount").and_then(as_u64),
            format: v.get("format").and_then(Value::as_str).map(str::to_string),
            fee: v.get("fee").and_then(as_u64),
        })
    }

    async fn vault_output_key(&self) -> Result<bitcoin::XOnlyPublicKey, PolicyError> {
        const M: &str = "hemi_getTunnel";
        let v: Value = self.client.call(M, json!([])).await?;
        v.get("vaultOutputKey")
            .and_then(Value::as_str)
            .and_then(|k| k.trim_start_matches("0x").parse().ok())
            .ok_or_else(|| decode_err(&self.client, M, "no vaultOutputKey"))
    }
}

/// The tunnel's rules (see the module docs), checked against `V`.
#[derive(Debug, Clone)]
pub struct TunnelPolicy<V> {
    view: V,
}

impl<V: TunnelView> TunnelPolicy<V> {
    /// The rules, asking `view`.
    pub fn new(view: V) -> Self {
        TunnelPolicy { view }
    }
}

impl TunnelPolicy<NodeView> {
    /// The rules, asking the node at `url` (each call bounded by `timeout`).
    pub fn node(url: &str, timeout: Duration) -> Self {
        Self::new(NodeView::new(url, timeout))
    }
}

impl<V: TunnelView> TunnelPolicy<V> {
    async fn check_payout(&self, r: &SignRequest, vault: &Vault) -> Result<(), PolicyError> {
        let vault_spk = vault.script_pubkey();
        for (input, (leaf, prevout)) in r.leaves.iter().zip(&r.prevouts).enumerate() {
            if leaf.is_some() {
                return Err(PolicyError::Input {
                    input,
                    reason: "a payout spends vault outputs through the key path only".into(),
                });
            }
            if prevout.script_pubkey != vault_spk {
                return Err(PolicyError::Input {
                    input,
                    reason: "spends an output that is not the vault's".into(),
                });
            }
        }
        let mut ids = Vec::new();
        let mut payments = Vec::new();
        for (output, o) in r.tx.output.iter().enumerate() {
            if let Some(list) = parse_id_list(&o.script_pubkey) {
                if o.value.to_sat() != 0 {
                    return Err(PolicyError::Output {
                        output,
                        reason: "an id list carries value".into(),
                    });
                }
                ids.extend(list);
            } else if o.script_pubkey != vault_spk {
                payments.push((output, o));
            }
        }
        let mut seen = BTreeSet::new();
        if let Some(id) = ids.iter().find(|id| !seen.insert(**id)) {
            return Err(PolicyError::Withdrawal {
                id: *id,
                reason: "listed twice".into(),
            });
        }
        if payments.len() != ids.len() {
            return Err(PolicyError::Output {
                output: payments.first().map_or(0, |p| p.0),
                reason: format!(
                    "{} payments for {} listed requests: every output other than the id \
                     lists and vault change must pay a listed request",
                    payments.len(),
                    ids.len()
                ),
            });
        }
        let mut shares = 0u64;
        for (id, (output, o)) in ids.iter().zip(payments) {
            let w = self.view.withdrawal(*id).await?;
            let refuse = |reason: String| PolicyError::Withdrawal { id: *id, reason };
            if w.status != "pending" {
                return Err(refuse(format!("the node says {:?}, not pending", w.status)));
            }
            if o.script_pubkey != w.script {
                return Err(refuse(format!(
                    "output {output} pays another script than the request's"
                )));
            }
            let value = o.value.to_sat();
            let low = w.amount.saturating_sub(w.max_fee);
            if value < low || value > w.amount {
                return Err(refuse(format!(
                    "output {output} pays {value} sat; the request allows {low}..={}",
                    w.amount
                )));
            }
            shares = shares.saturating_add(w.amount - value);
        }
        // The requests pay the fee (their fee shares); the vault never does.
        let fee = fee(r)?;
        if fee > shares {
            return Err(PolicyError::Output {
                output: 0,
                reason: format!(
                    "the fee is {fee} sat, above the {shares} sat the requests' fee shares pay \
                     (the vault pays no fee)"
                ),
            });
        }
        Ok(())
    }

    async fn check_sweep(&self, r: &SignRequest, vault: &Vault) -> Result<(), PolicyError> {
        let vault_spk = vault.script_pubkey();
        let tag = sweep_tag_script();
        let mut fees = 0u64;
        for (input, ((txin, leaf), prevout)) in
            r.tx.input
                .iter()
                .zip(&r.leaves)
                .zip(&r.prevouts)
                .enumerate()
        {
            let key = leaf.as_deref().and_then(deposit_leaf_key);
            if key != Some(vault.output_key()) {
                return Err(PolicyError::Input {
                    input,
                    reason: "a sweep spends deposits through a deposit leaf naming the vault key"
                        .into(),
                });
            }
            if !prevout.script_pubkey.is_p2tr() {
                return Err(PolicyError::Input {
                    input,
                    reason: "the spent output is not taproot".into(),
                });
            }
            let outpoint = txin.previous_output;
            let d = self.view.deposit(outpoint).await?;
            let refuse = |reason: String| PolicyError::Deposit { outpoint, reason };
            if d.status != "minted" {
                return Err(refuse(format!("the node says {:?}, not minted", d.status)));
            }
            if d.format.as_deref() != Some("taproot") {
                return Err(refuse(format!(
                    "format {:?}, not a taproot deposit",
                    d.format
                )));
            }
            if d.vout != Some(outpoint.vout) {
                return Err(refuse(format!("the deposit is output {:?}", d.vout)));
            }
            if d.amount != Some(prevout.value.to_sat()) {
                return Err(refuse(format!(
                    "the request says {} sat, the node {:?}",
                    prevout.value.to_sat(),
                    d.amount
                )));
            }
            fees = fees.saturating_add(d.fee.unwrap_or(0));
        }
        // The tunnel fees the deposits paid on L2 cover the sweep's fee; the vault pays none.
        let fee = fee(r)?;
        if fee > fees {
            return Err(PolicyError::Output {
                output: 0,
                reason: format!(
                    "the sweep's fee is {fee} sat, above the {fees} sat of tunnel fees its \
                     deposits paid"
                ),
            });
        }
        let mut to_vault = false;
        for (output, o) in r.tx.output.iter().enumerate() {
            if o.script_pubkey == vault_spk {
                to_vault = true;
            } else if o.script_pubkey != tag || o.value.to_sat() != 0 {
                return Err(PolicyError::Output {
                    output,
                    reason: "a sweep pays only the vault".into(),
                });
            }
        }
        if !to_vault {
            return Err(PolicyError::Output {
                output: 0,
                reason: "a sweep must pay the vault".into(),
            });
        }
        Ok(())
    }
}

/// The transaction's fee: what its inputs spend less what its outputs pay.
fn fee(r: &SignRequest) -> Result<u64, PolicyError> {
    let overflow = || PolicyError::Output {
        output: 0,
        reason: "values overflow".into(),
    };
    let spent = r
        .prevouts
        .iter()
        .try_fold(0u64, |a, o| a.checked_add(o.value.to_sat()))
        .ok_or_else(overflow)?;
    let paid =
        r.tx.output
            .iter()
            .try_fold(0u64, |a, o| a.checked_add(o.value.to_sat()))
            .ok_or_else(overflow)?;
    spent.checked_sub(paid).ok_or_else(|| PolicyError::Output {
        output: 0,
        reason: format!("outputs {paid} sat exceed the inputs' {spent}"),
    })
}

#[async_trait::async_trait]
impl<V: TunnelView> Policy for TunnelPolicy<V> {
    async fn check(&self, request: &SignRequest, vault: &Vault) -> Result<(), PolicyError> {
        let theirs = self.view.vault_output_key().await?;
        if theirs != vault.output_key() {
            return Err(PolicyError::Refused(format!(
                "the L2 node runs the vault with output key {theirs}, not this custodian's {}",
                vault.output_key()
            )));
        }
        let payout = hemi_tunnel::payout::is_payout(&request.tx);
        let sweep = is_sweep(&request.tx);
        match (payout, sweep) {
            (true, true) => Err(PolicyError::Ambiguous),
            (true, false) => self.check_payout(request, vault).await,
            (false, true) => self.check_sweep(request, vault).await,
            (false, false) => Err(PolicyError::NotTunnel),
        }
    }
}

/// A policy with a fixed answer, where no node runs (tests, a drill).
#[derive(Debug, Clone)]
pub struct FixedPolicy {
    refusal: Option<String>,
}

impl FixedPolicy {
    /// Signs everything.
    pub fn allow() -> Self {
        FixedPolicy { refusal: None }
    }

    /// Refuses everything, giving `reason`.
    pub fn refuse(reason: &str) -> Self {
        FixedPolicy {
            refusal: Some(reason.to_string()),
        }
    }
}

#[async_trait::async_trait]
impl Policy for FixedPolicy {
    async fn check(&self, _: &SignRequest, _: &Vault) -> Result<(), PolicyError> {
        match &self.refusal {
            None => Ok(()),
            Some(r) => Err(PolicyError::Refused(r.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bitcoin::hashes::Hash;
    use bitcoin::{Amount, TxOut, Txid};
    use hemi_tunnel::payout::{build_payout, Request};

    use super::*;
    use crate::identity::Identity;

    #[derive(Default)]
    struct Table(HashMap<u32, Withdrawal>);

    #[async_trait::async_trait]
    impl TunnelView for Table {
        async fn withdrawal(&self, id: u32) -> Result<Withdrawal, PolicyError> {
            self.0
                .get(&id)
                .cloned()
                .ok_or(PolicyError::Refused("no such".into()))
        }
        async fn deposit(&self, outpoint: OutPoint) -> Result<DepositStatus, PolicyError> {
            Err(PolicyError::Deposit {
                outpoint,
                reason: "none in this table".into(),
            })
        }
        async fn vault_output_key(&self) -> Result<bitcoin::XOnlyPublicKey, PolicyError> {
            Ok(devnet_vault().output_key())
        }
    }

    /// The vault of these tests: the devnet's custodians with a fixed recovery key.
    fn devnet_vault() -> Vault {
        let custody = hemi_tunnel::Custody::devnet().expect("devnet");
        let recovery = Identity::from_secret_hex("recovery", &"07".repeat(32))
            .expect("key")
            .public();
        custody.vault(recovery, 144).expect("vault")
    }

    fn setup() -> (Vault, SignRequest, Table) {
        let vault = devnet_vault();
        let utxo = (
            OutPoint::new(Txid::from_byte_array([1; 32]), 0),
            TxOut {
                value: Amount::from_sat(200_000),
                script_pubkey: vault.script_pubkey(),
            },
        );
        let script = ScriptBuf::new_p2tr(
            &bitcoin::secp256k1::Secp256k1::verification_only(),
            Identity::generate().public(),
            None,
        );
        let request = Request {
            id: 4,
            script: script.clone(),
            amount: 100_000,
            max_fee: 3_000,
        };
        let tx = build_payout(&vault, std::slice::from_ref(&utxo), &[request], 2).expect("tx");
        let table = Table(HashMap::from([(
            4,
            Withdrawal {
                status: "pending".into(),
                script,
                amount: 100_000,
                max_fee: 3_000,
            },
        )]));
        let r = SignRequest::new(tx, vec![utxo.1], vec![None]).expect("request");
        (vault, r, table)
    }

    #[tokio::test]
    async fn a_payout_of_pending_requests_passes_and_every_deviation_is_refused() {
        let (vault, r, table) = setup();
        let policy = TunnelPolicy::new(table);
        policy.check(&r, &vault).await.expect("the payout as built");

        let with = |f: &dyn Fn(&mut SignRequest)| {
            let mut x = r.clone();
            f(&mut x);
            x
        };
        let cases: Vec<(SignRequest, &str)> = vec![
            (
                with(&|x| x.tx.output[0].value = Amount::from_sat(90_000)),
                "allows 97000..=100000",
            ),
            (
                with(&|x| x.tx.output[0].value = Amount::from_sat(100_001)),
                "allows",
            ),
            (
                with(&|x| x.tx.output[0].script_pubkey = x.prevouts[0].script_pubkey.clone()),
                "payments for 1 listed",
            ),
            (
                with(&|x| {
                    x.tx.output.push(TxOut {
                        value: Amount::from_sat(1_000),
                        script_pubkey: ScriptBuf::new_op_return([1u8; 4]),
                    })
                }),
                "2 payments for 1 listed",
            ),
            (
                with(&|x| x.prevouts[0].script_pubkey = ScriptBuf::new_op_return([0u8; 1])),
                "not the vault's",
            ),
            (
                with(&|x| x.leaves[0] = Some(ScriptBuf::new())),
                "key path only",
            ),
            (
                with(&|x| {
                    if let Some(change) = x.tx.output.last_mut() {
                        change.value = Amount::from_sat(change.value.to_sat() - 5_000);
                    }
                }),
                "the vault pays no fee",
            ),
            (
                with(&|x| {
                    x.tx.output
                        .retain(|o| parse_id_list(&o.script_pubkey).is_none())
                }),
                "neither a payout",
            ),
        ];
        for (req, expected) in cases {
            let err = policy
                .check(&req, &vault)
                .await
                .expect_err(expected)
                .to_string();
            assert!(err.contains(expected), "{err:?} should say {expected:?}");
        }

        let mut paid = setup().2;
        if let Some(w) = paid.0.get_mut(&4) {
            w.status = "paid".into();
        }
        let err = TunnelPolicy::new(paid)
            .check(&r, &vault)
            .await
            .expect_err("paid");
        assert!(err.to_string().contains("not pending"), "{err}");
    }
}
