//! The tunnel as the node runs it: the devnet's built-in 2-of-3 FROST vault, the chain spec's
//! `tunnel`, and `hemi_getTunnel` / `hemi_getDeposit`, which tell a user where a deposit is —
//! not in a block, refused (and why), n of N confirmations, waiting for the next L2 block, or
//! minted in block B by transaction T.

use std::str::FromStr;
use std::sync::Arc;

use alloy_primitives::B256;
use bitcoin::{Network, Txid};
use hemi_btc_view::{AsOf, BitcoinView};
use hemi_btc_wallet::Key;
use hemi_chain::{Chain, TunnelSpec};
use hemi_tunnel::contracts::{self, HEMI_BTC_ADDRESS, TUNNEL_MANAGER_ADDRESS};
use hemi_tunnel::{Custody, TunnelParams, Vault};
use jsonrpsee::types::ErrorObjectOwned;
use serde_json::{json, Value};

/// Seed label of the devnet vault's recovery key (deterministic, like the dev accounts).
pub const DEVNET_RECOVERY_KEY_SEED: &str = "hemi-devnet-vault-recovery-key-0";
/// The devnet vault's recovery timelock, Bitcoin blocks (a day).
pub const DEVNET_RECOVERY_AFTER: u16 = 144;
/// The devnet's deposit fee, satoshis.
pub const DEVNET_DEPOSIT_FEE: u64 = 1_000;
/// The devnet's smallest deposit, satoshis.
pub const DEVNET_MIN_DEPOSIT: u64 = 10_000;

/// The tunnel a node runs with.
#[derive(Debug, Clone)]
pub(crate) struct Tunnel {
    pub(crate) vault: Vault,
    pub(crate) spec: TunnelSpec,
    pub(crate) network: Network,
}

impl Tunnel {
    /// The tunnel of `vault` with the devnet's fees.
    pub(crate) fn new(
        vault: Vault,
        deposit_confirmations: u32,
        withdrawal_deadline: u64,
        network: Network,
    ) -> Self {
        let params = TunnelParams {
            vault_output_key: B256::from(vault.output_key().serialize()),
            deposit_fee: DEVNET_DEPOSIT_FEE,
            min_deposit: DEVNET_MIN_DEPOSIT,
            deposit_confirmations,
            withdrawal_deadline,
        };
        let spec = TunnelSpec {
            activation: 1,
            params,
        };
        Tunnel {
            vault,
            spec,
            network,
        }
    }

    /// The devnet's: the vault of the deterministic 2-of-3 FROST set ([`Custody::devnet`]),
    /// and that set.
    pub(crate) fn devnet(
        deposit_confirmations: u32,
        withdrawal_deadline: u64,
        network: Network,
    ) -> anyhow::Result<(Self, Custody)> {
        let custody = Custody::devnet()?;
        let recovery = Key::from_seed(DEVNET_RECOVERY_KEY_SEED).x_only();
        let vault = custody.vault(recovery, DEVNET_RECOVERY_AFTER)?;
        Ok((
            Self::new(vault, deposit_confirmations, withdrawal_deadline, network),
            custody,
        ))
    }

    /// The vault `hemi_getTunnel` / `hemi_nodeStatus` describe (`tunnel.vault` below): what a
    /// follower takes from the node it follows when no `--vault` is given.
    ///
    /// # Errors
    /// A missing or malformed field.
    pub(crate) fn vault_from_json(v: &Value) -> anyhow::Result<Vault> {
        use anyhow::Context;
        let key = |name: &str| -> anyhow::Result<bitcoin::XOnlyPublicKey> {
            let s = v[name]
                .as_str()
                .with_context(|| format!("{name} missing"))?;
            bitcoin::XOnlyPublicKey::from_str(s).with_context(|| format!("{name}: {s:?}"))
        };
        let custodian_keys = v["custodianKeys"]
            .as_array()
            .context("custodianKeys missing")?
            .iter()
            .map(|k| {
                let s = k.as_str().unwrap_or_default();
                bitcoin::XOnlyPublicKey::from_str(s).with_context(|| format!("custodian key {s:?}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let threshold = v["threshold"].as_u64().context("threshold missing")?;
        let recovery_after = v["recoveryAfter"]
            .as_u64()
            .context("recoveryAfter missing")?;
        Ok(Vault::new(
            key("groupKey")?,
            usize::try_from(threshold)?,
            custodian_keys,
            key("recoveryKey")?,
            u16::try_from(recovery_after)?,
        )?)
    }

    /// The vault's keys and timelock (in `hemi_nodeStatus`, and the start of `hemi_getTunnel`);
    /// [`Tunnel::vault_from_json`] reads them back.
    pub(crate) fn vault_json(&self) -> Value {
        json!({
            "groupKey": self.vault.group_key.to_string(),
            "threshold": self.vault.threshold,
            "custodianKeys": self.vault.custodian_keys.iter().map(|k| k.to_string()).collect::<Vec<_>>(),
            "recoveryKey": self.vault.recovery_key.to_string(),
            "recoveryAfter": self.vault.recovery_after,
        })
    }

    /// The vault's address.
    pub(crate) fn address(&self) -> bitcoin::Address {
        self.vault.address(self.network)
    }

    /// `hemi_getTunnel`.
    pub(crate) fn json(&self) -> Value {
        let p = &self.spec.params;
        let mut out = self.vault_json();
        let rest = json!({
            "vaultAddress": self.address().to_string(),
            "vaultOutputKey": p.vault_output_key,
            "custodians": self.vault.custodian_keys.len(),
            "tokenAddress": HEMI_BTC_ADDRESS,
            "tunnelAddress": TUNNEL_MANAGER_ADDRESS,
            "tokenSymbol": "hemiBTC",
            "tokenDecimals": 8,
            "depositConfirmations": p.deposit_confirmations,
            "depositFee": p.deposit_fee,
            "minDeposit": p.min_deposit,
            "withdrawalDeadline": p.withdrawal_deadline,
            "activationBlock": self.spec.activation,
            "depositFormats": ["opReturnAddress", "opReturnHex", "taproot"],
            "reclaimableFormats": ["taproot"],
            "taprootSweepBlocks": contracts::SWEEP_BLOCKS,
        });
        if let (Value::Object(out), Value::Object(rest)) = (&mut out, rest) {
            out.extend(rest);
        }
        out
    }
}

/// What `hemi_getDeposit` reads.
pub(crate) struct TunnelContext {
    pub(crate) tunnel: Tunnel,
    pub(crate) chain: Arc<Chain>,
    pub(crate) bitcoin: Arc<dyn BitcoinView>,
}

fn invalid(m: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32602, m.into(), None::<()>)
}

fn internal(m: impl std::fmt::Display) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32603, m.to_string(), None::<()>)
}

impl TunnelContext {
    /// Where deposit `txid` (output `vout`, or the one paying the vault) stands.
    pub(crate) fn deposit(&self, txid: Txid, vout: Option<u32>) -> Result<Value, ErrorObjectOwned> {
        let p = &self.tunnel.spec.params;
        let mut out = json!({"txid": txid.to_string(), "required": p.deposit_confirmations});
        let tip = self.bitcoin.tip().map_err(internal)?;
        let Some(indexed) = self
            .bitcoin
            .transaction(&txid, AsOf::Tip)
            .map_err(internal)?
        else {
            out["status"] = json!("unknown");
            out["reason"] = json!(format!(
                "not in a block of Bitcoin's best chain as this node has indexed it (tip {} at \
                 height {}); a deposit in the mempool, or reorganised out, shows here until it \
                 is mined",
                tip.hash, tip.height
            ));
            return Ok(out);
        };
        let refused = |mut out: Value, reason: String| {
            out["status"] = json!("refused");
            out["reason"] = json!(reason);
            Ok(out)
        };
        let block = indexed.location.block;
        out["bitcoinBlock"] = json!({"height": block.height, "hash": block.hash.to_string()});
        let confirmations = tip.height.saturating_sub(block.height) + 1;
        out["confirmations"] = json!(confirmations);
        let vault = self.tunnel.vault.script_pubkey();
        let (deposit, taproot) = match hemi_tunnel::parse_op_return_deposit(&indexed.tx, &vault) {
            Ok(Some(d)) => (d, None),
            Ok(None) => {
                match hemi_tunnel::find_taproot_deposit(&indexed.tx, self.tunnel.vault.output_key())
                {
                    Ok(Some((d, found))) => (found, Some(d)),
                    Ok(None) => {
                        let why = format!(
                            "the transaction does not pay the vault {}",
                            self.tunnel.address()
                        );
                        return refused(out, why);
                    }
                    Err(e) => return refused(out, format!("taproot deposit: {e}")),
                }
            }
            Err(e) => return refused(out, e.to_string()),
        };
        out["vout"] = json!(deposit.outpoint.vout);
        if let Some(v) = vout.filter(|v| *v != deposit.outpoint.vout) {
            let why = format!(
                "output {v} is not the deposit (output {} is)",
                deposit.outpoint.vout
            );
            return refused(out, why);
        }
        let amount = deposit.amount.to_sat();
        out["amount"] = json!(amount);
        out["recipient"] = json!(deposit.recipient);
        out["format"] = json!(match deposit.format {
            hemi_tunnel::DepositFormat::OpReturnAddress => "opReturnAddress",
            hemi_tunnel::DepositFormat::OpReturnHex => "opReturnHex",
            hemi_tunnel::DepositFormat::Taproot => "taproot",
        });
        // A taproot deposit's output may be spent: by the custodians' sweep into the vault
        // (after its mint), or by its depositor through the reclaim leaf.
        let spent = match taproot {
            Some(d) => {
                out["reclaimAfter"] = json!(d.reclaim_after);
                let at = u64::from(block.height) + u64::from(d.reclaim_after);
                out["reclaimableAtHeight"] = json!(at);
                let spent = self.bitcoin.spent_by(&deposit.outpoint).map_err(internal)?;
                if let Some(by) = &spent {
                    let sweep = self
                        .bitcoin
                        .transaction(&by.txid, AsOf::Tip)
                        .map_err(internal)?
                        .is_some_and(|t| hemi_tunnel::sweep::is_sweep(&t.tx));
                    out[if sweep { "sweptIn" } else { "spentIn" }] =
                        json!({"txid": by.txid.to_string(), "height": by.height});
                }
                spent
            }
            None => None,
        };
        if amount < p.min_deposit {
            let why = format!(
                "{amount} sat is below the minimum deposit of {} sat",
                p.min_deposit
            );
            return refused(out, why);
        }
        out["fee"] = json!(p.deposit_fee);
        out["net"] = json!(amount - p.deposit_fee);
        let head = self.chain.head().0;
        let state = self.chain.state_at(head).map_err(internal)?;
        let display = contracts::txid_display(&txid);
        if let Some(n) = hemi_chain::tunnel::minted_in(&state, display, deposit.outpoint.vout)
            .map_err(internal)?
        {
            out["status"] = json!("minted");
            out["mintedIn"] = self.mint_location(n, display, deposit.outpoint.vout)?;
            return Ok(out);
        }
        if let Some(d) = taproot {
            let at = u64::from(block.height) + u64::from(d.reclaim_after);
            if let Some(by) = spent {
                let why = format!(
                    "not minted, and its output was spent by {} at Bitcoin height {} (the \
                     depositor's reclaim)",
                    by.txid, by.height
                );
                return refused(out, why);
            }
            let chain_id = self.chain.spec().chain_id;
            let at_confirmations = confirmations.max(p.deposit_confirmations);
            if let Some(why) = d.mint_refusal(chain_id, p.deposit_fee, at_confirmations) {
                let why = format!(
                    "{why}; so it is not minted, and its depositor can take it back from \
                     Bitcoin height {at} (`hemi deposit reclaim`)"
                );
                return refused(out, why);
            }
            let window = p.deposit_confirmations.max(1) + contracts::SWEEP_BLOCKS;
            if confirmations >= window {
                out["status"] = json!("eligible");
                out["reason"] = json!(format!(
                    "confirmed, past the sequencer's window of {} blocks for taproot deposits: \
                     anyone may mint it with TunnelManager.confirmDeposit(txid, {}) while its \
                     reclaim path stays shut",
                    contracts::SWEEP_BLOCKS,
                    deposit.outpoint.vout
                ));
                return Ok(out);
            }
        }
        if let Some(n) = hemi_chain::tunnel::frozen_at(&state).map_err(internal)? {
            let why = format!(
                "the vault is frozen: an invalid spend of it was reported in L2 block {n}, so \
                 new deposits are not minted"
            );
            return refused(out, why);
        }
        if confirmations < p.deposit_confirmations {
            out["status"] = json!("confirming");
            out["reason"] = json!(format!(
                "{confirmations} of {} confirmations; minted in the first L2 block pinned at \
                 Bitcoin height {} or above",
                p.deposit_confirmations,
                block.height + p.deposit_confirmations - 1
            ));
        } else {
            out["status"] = json!("eligible");
            out["reason"] =
                json!("confirmed; minted by the next L2 block whose Bitcoin pin has caught up");
        }
        Ok(out)
    }

    /// The block and transaction that minted `(txid, vout)` in L2 block `n`.
    fn mint_location(&self, n: u64, txid: B256, vout: u32) -> Result<Value, ErrorObjectOwned> {
        let mut at = json!({"block": n});
        let Some(cached) = self.chain.block_with_receipts(n).map_err(internal)? else {
            return Ok(at);
        };
        at["blockHash"] = json!(cached.block.hash);
        let topic = contracts::deposit_confirmed_topic();
        for (tx, r) in cached.block.txs.iter().zip(&cached.receipts) {
            let found = r.receipt.logs.iter().any(|l| {
                l.address == TUNNEL_MANAGER_ADDRESS
                    && l.topics().first() == Some(&topic)
                    && l.topics().get(2) == Some(&txid)
                    && l.data.data.get(28..32) == Some(&vout.to_be_bytes()[..])
            });
            if found {
                at["transactionHash"] = json!(tx.hash);
                break;
            }
        }
        Ok(at)
    }
}

impl TunnelContext {
    /// Where withdrawal request `id` stands.
    pub(crate) fn withdrawal(&self, id: u64) -> Result<Value, ErrorObjectOwned> {
        let count = crate::custodian::withdrawal_count(&self.chain).map_err(internal)?;
        if id == 0 || id > count {
            return Ok(json!({
                "id": id,
                "status": "unknown",
                "reason": format!("no request {id}: {count} made so far (ids start at 1)"),
            }));
        }
        let w =
            crate::custodian::get_withdrawal(&self.chain, &self.bitcoin, self.tunnel.network, id)
                .map_err(internal)?;
        let script = bitcoin::ScriptBuf::from_bytes(w.script.to_vec());
        let address = bitcoin::Address::from_script(&script, self.tunnel.network)
            .map(|a| a.to_string())
            .ok();
        let deadline = w.requestedAt + self.tunnel.spec.params.withdrawal_deadline;
        let mut out = json!({
            "id": id,
            "requester": w.requester,
            "script": hex::encode(script.as_bytes()),
            "address": address,
            "amount": w.amount,
            "maxFee": w.maxFee,
            "requestedAt": w.requestedAt,
            "challengeableFrom": deadline,
        });
        out["status"] = json!(match w.status {
            1 => "pending",
            2 => "paid",
            3 => "challenged",
            _ => "unknown",
        });
        if w.status == 2 {
            let mut txid = w.payoutTxid.0;
            txid.reverse();
            let txid = <Txid as bitcoin::hashes::Hash>::from_byte_array(txid);
            out["payoutTxid"] = json!(txid.to_string());
            if let Ok(Some(t)) = self.bitcoin.transaction(&txid, AsOf::Tip) {
                let tip = self.bitcoin.tip().map_err(internal)?;
                out["payoutConfirmations"] =
                    json!(tip.height.saturating_sub(t.location.block.height) + 1);
            }
        }
        Ok(out)
    }
}

/// `hemi_getTunnel`, `hemi_getDeposit` and `hemi_getWithdrawal`.
pub(crate) fn tunnel_module(
    ctx: TunnelContext,
) -> anyhow::Result<jsonrpsee::RpcModule<TunnelContext>> {
    let mut m = jsonrpsee::RpcModule::new(ctx);
    m.register_blocking_method(
        "hemi_getTunnel",
        |_, ctx, _| -> Result<Value, ErrorObjectOwned> {
            let mut out = ctx.tunnel.json();
            let state = ctx.chain.state_at(ctx.chain.head().0).map_err(internal)?;
            out["frozenAt"] = json!(hemi_chain::tunnel::frozen_at(&state).map_err(internal)?);
            let faulty = state
                .storage(
                    &TUNNEL_MANAGER_ADDRESS,
                    &alloy_primitives::B256::from(
                        alloy_primitives::U256::from(contracts::SLOT_FAULTY).to_be_bytes::<32>(),
                    ),
                )
                .map_err(internal)?;
            out["faulty"] = json!(!faulty.is_zero());
            Ok(out)
        },
    )?;
    m.register_blocking_method(
        "hemi_getDeposit",
        |params, ctx, _| -> Result<Value, ErrorObjectOwned> {
            let v: Vec<Value> = params
                .parse()
                .map_err(|_| invalid("expected params [txid, vout?]"))?;
            let txid = v
                .first()
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("expected params [txid, vout?]: txid missing"))?;
            let txid = Txid::from_str(txid.trim_start_matches("0x"))
                .map_err(|_| invalid(format!("not a Bitcoin txid: {txid:?}")))?;
            let vout = match v.get(1) {
                None | Some(Value::Null) => None,
                Some(x) => Some(
                    x.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| invalid("vout must be a non-negative integer"))?,
                ),
            };
            ctx.deposit(txid, vout)
        },
    )?;
    m.register_blocking_method(
        "hemi_getWithdrawal",
        |params, ctx, _| -> Result<Value, ErrorObjectOwned> {
            let v: Vec<Value> = params
                .parse()
                .map_err(|_| invalid("expected params [id]"))?;
            let id = match v.first() {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(s)) => match s.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16).ok(),
                    None => s.parse().ok(),
                },
                _ => None,
            }
            .ok_or_else(|| invalid("expected params [id]: a request id (number)"))?;
            ctx.withdrawal(id)
        },
    )?;
    Ok(m)
}
