//! `hemi force-tx`: publishes a signed L2 transaction in Bitcoin (an OP_RETURN output or a
//! taproot script-path envelope, see `hemi_chain::forced`) so the sequencers must include it
//! within the forced-inclusion window once Bitcoin has confirmed it — the way around a sequencer
//! that ignores you.

use anyhow::{bail, Context};
use bitcoin::{Amount, Transaction, TxOut};
use clap::{Args, ValueEnum};
use hemi_btc_wallet::{build_payment, select_largest_first, Envelope, Key, KeyKind};
use hemi_chain::forced::{envelope_leaf, forced_script, Carrier};
use hemi_chain::L2Tx;
use serde_json::json;

use crate::deposit::KeyArgs;

/// Bitcoin Core's default `-datacarriersize` (v30+): the most OP_RETURN bytes a transaction
/// may carry and still relay.
const OP_RETURN_RELAY_LIMIT: usize = 100_000;
/// Bitcoin Core's `MAX_STANDARD_TX_WEIGHT`: heavier transactions do not relay.
const MAX_STANDARD_TX_WEIGHT: u64 = 400_000;

/// How `hemi force-tx` carries the transaction in Bitcoin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CarrierArg {
    /// An OP_RETURN output when it fits Bitcoin Core's relay limit and costs less; otherwise a
    /// taproot envelope.
    Auto,
    /// One transaction with an OP_RETURN output (its bytes pay the full fee rate).
    OpReturn,
    /// A commit and a reveal transaction; the data is in the reveal's witness (a quarter of the
    /// fee rate per byte).
    Taproot,
}

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
    /// How to carry it: `auto` takes the cheaper of the two that relay.
    #[arg(long, value_enum, default_value = "auto")]
    pub carrier: CarrierArg,
}

/// The Bitcoin transactions that publish the forced transaction in `carrier`, in broadcast
/// order, the last one carrying it: one payment with the OP_RETURN output, or a commit paying
/// the envelope's output and the reveal that spends it by the leaf.
fn route(
    carrier: Carrier,
    key: &Key,
    kind: KeyKind,
    utxos: &[(bitcoin::OutPoint, TxOut)],
    chain_id: u64,
    raw: &[u8],
    fee_rate: f64,
) -> anyhow::Result<Vec<Transaction>> {
    let txs = match carrier {
        Carrier::OpReturn => {
            let outputs = vec![TxOut {
                value: Amount::ZERO,
                script_pubkey: forced_script(chain_id, raw),
            }];
            vec![build_payment(key, kind, utxos, outputs, fee_rate)?]
        }
        Carrier::Taproot => {
            let envelope = Envelope::new(key, envelope_leaf(&key.x_only(), chain_id, raw))?;
            let commit_out = envelope.commit_output(key, kind, fee_rate)?;
            let commit = build_payment(key, kind, utxos, vec![commit_out], fee_rate)?;
            let reveal = envelope.reveal(key, kind, &commit, 0, fee_rate)?;
            vec![commit, reveal]
        }
    };
    if let Some(big) = txs
        .iter()
        .find(|t| t.weight().to_wu() > MAX_STANDARD_TX_WEIGHT)
    {
        bail!(
            "its Bitcoin transaction would weigh {} WU, over the {MAX_STANDARD_TX_WEIGHT} that relay",
            big.weight().to_wu()
        );
    }
    Ok(txs)
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
    let bitcoin = crate::deposit::bitcoin_rpc(&args.key)?;
    let utxos = crate::deposit::spendable_utxos(&args.rpc_url, &from, bitcoin.as_ref()).await?;
    let fee_rate = args.key.fee_rate as f64;
    // Enough for either route: the data at the full rate, inputs and change, and the
    // envelope's output left for the reveal.
    let fee = Amount::from_sat(args.key.fee_rate * (raw.len() as u64 + 400) + 1_000);
    let chosen = select_largest_first(utxos, fee);
    if chosen.is_empty() {
        bail!(
            "{from} has no mature outputs that nothing spends yet, as the node at {} sees Bitcoin",
            args.rpc_url
        );
    }
    let paying = || format!("paying the Bitcoin fee from {from}");
    let fits = forced_script(chain_id, &raw).len() <= OP_RETURN_RELAY_LIMIT;
    // A chain made before envelopes existed reads OP_RETURN outputs only.
    let envelopes = params["taprootEnvelopes"].as_bool().unwrap_or(false);
    let build = |carrier| {
        route(carrier, &key, kind, &chosen, chain_id, &raw, fee_rate)
            .with_context(paying)
            .map(|txs| (carrier, txs))
    };
    let (carrier, txs) = match args.carrier {
        CarrierArg::OpReturn => {
            if !fits {
                bail!(
                    "a {}-byte transaction does not fit an OP_RETURN that relays (at most {OP_RETURN_RELAY_LIMIT} bytes): use --carrier taproot",
                    raw.len()
                );
            }
            build(Carrier::OpReturn)?
        }
        CarrierArg::Taproot if !envelopes => {
            bail!("the node's chain reads forced transactions from OP_RETURN outputs only (its spec predates taproot envelopes)")
        }
        CarrierArg::Taproot => build(Carrier::Taproot)?,
        CarrierArg::Auto => {
            // The cheaper of the two that can be built, relay and count on this chain; either
            // alone if only one can.
            let vsize = |txs: &[Transaction]| txs.iter().map(|t| t.vsize()).sum::<usize>();
            let op = fits.then(|| build(Carrier::OpReturn));
            match (op, envelopes.then(|| build(Carrier::Taproot))) {
                (Some(Ok(op)), Some(Ok(env))) if vsize(&op.1) <= vsize(&env.1) => op,
                (Some(Ok(op)), None | Some(Err(_))) => op,
                (_, Some(Ok(env))) => env,
                (_, Some(Err(e))) | (Some(Err(e)), None) => return Err(e),
                (None, None) => bail!(
                    "a {}-byte transaction does not fit an OP_RETURN that relays, and the node's chain reads no taproot envelopes",
                    raw.len()
                ),
            }
        }
    };
    let carrier = match carrier {
        Carrier::OpReturn => "an OP_RETURN output",
        Carrier::Taproot => "a taproot envelope",
    };
    let Some(last) = txs.last() else {
        bail!("no Bitcoin transaction built");
    };
    let txid = last.compute_txid();
    match bitcoin {
        Some(rpc) => {
            for tx in &txs {
                rpc.send_raw_transaction(tx).await.map_err(|e| {
                    anyhow::anyhow!(
                        "Bitcoin node refused transaction {}: {e}",
                        tx.compute_txid()
                    )
                })?;
            }
            println!("{txid}");
        }
        None => {
            for tx in &txs {
                println!("{}", bitcoin::consensus::encode::serialize_hex(tx));
            }
            eprintln!("signed, not sent (no --bitcoin-rpc): broadcast each line, in order, with `bitcoin-cli sendrawtransaction`");
        }
    }
    if txs.len() == 2 {
        eprintln!(
            "commit transaction {} pays the envelope that {txid} reveals",
            txs[0].compute_txid()
        );
    }
    eprintln!(
        "L2 transaction {} from {sender} published in {carrier} of Bitcoin transaction {txid} ({} vB in all)",
        tx.hash(),
        txs.iter().map(|t| t.vsize()).sum::<usize>()
    );
    eprintln!(
        "  due once {} Bitcoin blocks confirm it; included within {} L2 blocks after that",
        params["confirmations"], params["window"]
    );
    eprintln!("  where it is: hemi_getForcedTransactions");
    Ok(())
}
