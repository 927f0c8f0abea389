//! `hemi force-tx`: publishes a signed L2 transaction in Bitcoin (an OP_RETURN output, see
//! `hemi_chain::forced`) so the sequencers must include it within the forced-inclusion window
//! once Bitcoin has confirmed it — the way around a sequencer that ignores you.

use anyhow::{bail, Context};
use bitcoin::{Amount, TxOut};
use clap::Args;
use hemi_btc_wallet::{build_payment, select_largest_first};
use hemi_chain::forced::forced_script;
use hemi_chain::L2Tx;
use serde_json::json;

use crate::deposit::KeyArgs;

/// `hemi force-tx` flags.
#[derive(Debug, Args)]
pub(crate) struct ForceTxArgs {
    /// The signed L2 transaction, EIP-2718 hex (e.g. from `cast mktx`).
    #[arg(long)]
    pub raw: String,
    /// Bitcoin key, network, RPC and fee rate (the key pays the Bitcoin fee).
    #[command(flatten)]
    pub key: KeyArgs,
    /// The hemi node whose Bitcoin index funds the transaction and whose chain id is used.
    #[arg(long, env = "HEMI_L2_RPC", default_value = "http://127.0.0.1:8545")]
    pub rpc_url: String,
}

/// Runs `hemi force-tx`.
pub(crate) async fn run(args: ForceTxArgs) -> anyhow::Result<()> {
    let raw = hex::decode(args.raw.trim().trim_start_matches("0x")).context("--raw is not hex")?;
    let tx = match L2Tx::decode_2718(&raw) {
        Ok(tx @ L2Tx::Eth(_)) => tx,
        Ok(_) => bail!("--raw is a system transaction type; only user transactions can be forced"),
        Err(e) => bail!("--raw is not a signed L2 transaction: {e}"),
    };
    let sender = tx
        .recover_sender()
        .context("--raw: the signature does not recover")?;
    let (key, kind, network) = crate::deposit::parse_key(&args.key)?;
    let chain_id = crate::config::l2_call(&args.rpc_url, "eth_chainId", json!([])).await?;
    let chain_id =
        u64::from_str_radix(chain_id.as_str().unwrap_or("").trim_start_matches("0x"), 16)
            .context("the node's eth_chainId")?;
    let status = crate::config::l2_call(&args.rpc_url, "hemi_nodeStatus", json!([])).await?;
    let params = &status["forcedInclusion"];
    let from = key.address(kind, network);
    let utxos = crate::deposit::spendable_utxos(&args.rpc_url, &from).await?;
    // OP_RETURN bytes count in full (no witness discount), plus inputs and change.
    let fee = Amount::from_sat(args.key.fee_rate * (raw.len() as u64 + 400));
    let chosen = select_largest_first(utxos, fee);
    if chosen.is_empty() {
        bail!(
            "{from} has no confirmed, mature outputs as the node at {} sees Bitcoin",
            args.rpc_url
        );
    }
    let outputs = vec![TxOut {
        value: Amount::ZERO,
        script_pubkey: forced_script(chain_id, &raw),
    }];
    let btc = build_payment(&key, kind, &chosen, outputs, args.key.fee_rate as f64)
        .with_context(|| format!("paying the Bitcoin fee from {from}"))?;
    let txid = btc.compute_txid();
    match crate::deposit::bitcoin_rpc(&args.key)? {
        Some(rpc) => {
            rpc.send_raw_transaction(&btc)
                .await
                .map_err(|e| anyhow::anyhow!("Bitcoin node refused the transaction: {e}"))?;
            println!("{txid}");
        }
        None => {
            println!("{}", bitcoin::consensus::encode::serialize_hex(&btc));
            eprintln!("signed, not sent (no --bitcoin-rpc): broadcast with `bitcoin-cli sendrawtransaction`");
        }
    }
    eprintln!(
        "L2 transaction {} from {sender} published in Bitcoin transaction {txid} ({} vB)",
        tx.hash(),
        btc.vsize()
    );
    eprintln!(
        "  due once {} Bitcoin blocks confirm it; included within {} L2 blocks after that",
        params["confirmations"], params["window"]
    );
    eprintln!("  where it is: hemi_getForcedTransactions");
    Ok(())
}
