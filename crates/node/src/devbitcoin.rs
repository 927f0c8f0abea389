//! The devnet's Bitcoin helpers: `hemi_mineBitcoin(n[, address])` mines blocks and
//! `hemi_sendBitcoin(address, amount)` pays from the devnet's Bitcoin key, so a developer can
//! drive deposits without bitcoin-cli. Only `hemi devnet` serves them (a node that follows a
//! real network has no such key and must not mine).

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;

use bitcoin::{Address, Amount, Denomination, Network, OutPoint, TxOut};
use hemi_btc_rpc_client::BitcoinRpc;
use hemi_btc_view::{AsOf, BitcoinView};
use hemi_btc_wallet::{build_payment, select_largest_first, Key, KeyKind};
use jsonrpsee::types::ErrorObjectOwned;
use serde_json::{json, Value};

/// The most blocks one `hemi_mineBitcoin` mines.
const MAX_MINE: u64 = 1_000;
/// Fee rate of `hemi_sendBitcoin`, sat/vB.
const FEE_RATE: f64 = 2.0;

/// What the helpers use.
pub(crate) struct DevBitcoin {
    pub(crate) key: Key,
    pub(crate) rpc: BitcoinRpc,
    pub(crate) network: Network,
    pub(crate) view: Arc<dyn BitcoinView>,
}

fn invalid(m: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32602, m.into(), None::<()>)
}

fn failed(m: impl std::fmt::Display) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32000, m.to_string(), None::<()>)
}

impl DevBitcoin {
    fn address(&self, v: Option<&Value>) -> Result<Address, ErrorObjectOwned> {
        match v {
            None | Some(Value::Null) => Ok(self.key.address(KeyKind::P2wpkh, self.network)),
            Some(Value::String(s)) => Address::from_str(s)
                .map_err(|e| invalid(format!("not a Bitcoin address: {s:?} ({e})")))?
                .require_network(self.network)
                .map_err(|_| invalid(format!("not a {} address: {s:?}", self.network))),
            Some(other) => Err(invalid(format!("address must be a string, got {other}"))),
        }
    }

    async fn mine(&self, params: Vec<Value>) -> Result<Value, ErrorObjectOwned> {
        let n = match params.first() {
            None | Some(Value::Null) => 1,
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| invalid("n must be 1..=1000"))?,
            Some(Value::String(s)) => match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            }
            .ok_or_else(|| invalid(format!("n must be a number, got {s:?}")))?,
            Some(other) => return Err(invalid(format!("n must be a number, got {other}"))),
        };
        if !(1..=MAX_MINE).contains(&n) {
            return Err(invalid(format!("n must be 1..={MAX_MINE}, got {n}")));
        }
        let to = self.address(params.get(1))?;
        let hashes = self.rpc.generate_to_address(n, &to).await.map_err(failed)?;
        Ok(json!(hashes
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()))
    }

    async fn send(&self, params: Vec<Value>) -> Result<Value, ErrorObjectOwned> {
        let usage = "expected params [address, amount in BTC]";
        let to = match params.first() {
            Some(v @ Value::String(_)) => self.address(Some(v))?,
            _ => return Err(invalid(usage)),
        };
        let amount = match params.get(1) {
            Some(Value::String(s)) => Amount::from_str_in(s, Denomination::Bitcoin).ok(),
            Some(Value::Number(n)) => {
                Amount::from_str_in(&n.to_string(), Denomination::Bitcoin).ok()
            }
            _ => return Err(invalid(usage)),
        }
        .filter(|a| *a > Amount::ZERO)
        .ok_or_else(|| invalid(format!("amount must be a positive amount of BTC: {usage}")))?;
        // The key's mature, confirmed outputs that no mempool transaction spends (the built-in
        // PoP miner spends the same key).
        let mut in_mempool = HashSet::new();
        for txid in self.rpc.get_raw_mempool().await.map_err(failed)? {
            if let Ok(tx) = self.rpc.get_raw_transaction(&txid).await {
                in_mempool.extend(tx.input.iter().map(|i| i.previous_output));
            }
        }
        let script = self.key.script_pubkey(KeyKind::P2wpkh);
        let tip = self.view.tip().map_err(failed)?.height;
        let coins: Vec<(OutPoint, TxOut)> = self
            .view
            .utxos_by_script(&script, AsOf::Tip)
            .map_err(failed)?
            .into_iter()
            .filter(|u| !u.coinbase || tip + 1 >= u.height + 100)
            .filter(|u| !in_mempool.contains(&u.outpoint))
            .map(|u| {
                (
                    u.outpoint,
                    TxOut {
                        value: Amount::from_sat(u.value),
                        script_pubkey: u.script_pubkey,
                    },
                )
            })
            .collect();
        let chosen = select_largest_first(coins, amount + Amount::from_sat(10_000));
        if chosen.is_empty() {
            return Err(failed(
                "the devnet's Bitcoin key has no mature, unspent outputs yet (hemi_mineBitcoin)",
            ));
        }
        let out = TxOut {
            value: amount,
            script_pubkey: to.script_pubkey(),
        };
        let tx = build_payment(&self.key, KeyKind::P2wpkh, &chosen, vec![out], FEE_RATE)
            .map_err(failed)?;
        let txid = self.rpc.send_raw_transaction(&tx).await.map_err(failed)?;
        Ok(json!(txid.to_string()))
    }
}

/// `hemi_mineBitcoin` and `hemi_sendBitcoin`.
pub(crate) fn dev_bitcoin_module(
    ctx: DevBitcoin,
) -> anyhow::Result<jsonrpsee::RpcModule<DevBitcoin>> {
    let mut m = jsonrpsee::RpcModule::new(ctx);
    m.register_async_method("hemi_mineBitcoin", |params, ctx, _| async move {
        let v: Vec<Value> = params.parse().unwrap_or_default();
        ctx.mine(v).await
    })?;
    m.register_async_method("hemi_sendBitcoin", |params, ctx, _| async move {
        let v: Vec<Value> = params
            .parse()
            .map_err(|_| invalid("expected params [address, amount in BTC]"))?;
        ctx.send(v).await
    })?;
    Ok(m)
}
