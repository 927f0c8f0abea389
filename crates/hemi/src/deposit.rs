//! `hemi deposit`: lock BTC in the tunnel from a key (either deposit format), or print an
//! unsigned PSBT (`--psbt --from ADDRESS`) for the depositor's own wallet to sign; and
//! `hemi deposit reclaim`: take back a taproot deposit that was never swept, after its
//! timelock.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use alloy_primitives::Address as L2Address;
use anyhow::{bail, Context};
use bitcoin::key::Keypair;
use bitcoin::{Address, Amount, Denomination, Network, OutPoint, ScriptBuf, TxOut, XOnlyPublicKey};
use clap::{Args, Subcommand};
use hemi_btc_rpc_client::{BitcoinRpc, RpcError};
use hemi_btc_wallet::{build_payment, select_largest_first, Key, KeyKind};
use hemi_tunnel::deposit::op_return_script;
use hemi_tunnel::TaprootDeposit;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `hemi deposit` flags (or its `reclaim` subcommand).
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct DepositArgs {
    #[command(subcommand)]
    pub command: Option<DepositCommand>,
    #[command(flatten)]
    pub make: MakeArgs,
}

/// `hemi deposit`'s subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum DepositCommand {
    /// Spend a taproot deposit's reclaim leaf back to the depositor (after its N blocks).
    Reclaim(ReclaimArgs),
}

/// Flags shared by both: the key and the nodes.
#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    /// The depositor's secp256k1 secret key, 64 hex digits.
    #[arg(long, env = "HEMI_DEPOSIT_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Which of the key's outputs fund the deposit: p2wpkh or p2tr.
    #[arg(long, default_value = "p2wpkh")]
    pub key_type: String,
    /// Bitcoin network: mainnet, testnet, testnet4, signet, regtest.
    #[arg(long, env = "HEMI_NETWORK", default_value = "regtest")]
    pub network: String,
    /// The Bitcoin node that broadcasts (Bitcoin Core, or a devnet's embedded node); may carry
    /// user:password@. Without it the signed transaction is printed, not sent.
    #[arg(long, env = "HEMI_BITCOIN_RPC")]
    pub bitcoin_rpc: Option<String>,
    /// Bitcoin Core cookie file (instead of user:password in the URL).
    #[arg(long, env = "HEMI_BITCOIN_RPC_COOKIE")]
    pub bitcoin_rpc_cookie: Option<PathBuf>,
    /// Fee rate, sat/vB.
    #[arg(long, default_value_t = 2)]
    pub fee_rate: u64,
}

/// `hemi deposit` flags.
#[derive(Debug, Args)]
pub(crate) struct MakeArgs {
    /// BTC to lock, e.g. 1.5.
    #[arg(long)]
    pub amount: Option<String>,
    /// The L2 address that receives hemiBTC.
    #[arg(long)]
    pub recipient: Option<String>,
    /// `hemi` (OP_RETURN with the 20-byte address), `hemi-hex` (OP_RETURN with 40 hex digits),
    /// or `taproot` (a deposit output with a reclaim leaf, and a HEMT hint OP_RETURN).
    #[arg(long, default_value = "hemi")]
    pub format: String,
    /// Taproot deposits: Bitcoin blocks after which the depositor may reclaim (1..=65535).
    #[arg(long, default_value_t = 144)]
    pub reclaim_after: u16,
    /// Taproot deposits: the most the tunnel may keep as its fee, in satoshis (default: its
    /// current fee).
    #[arg(long)]
    pub max_fee: Option<u64>,
    /// Where to write the taproot deposit's record, needed to reclaim it (default:
    /// deposit-<txid>.json).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Print an unsigned PSBT (BIP-174, base64) funded by --from's outputs, for a wallet to
    /// sign and broadcast, instead of signing with --key.
    #[arg(long, requires = "from")]
    pub psbt: bool,
    /// With --psbt: the P2WPKH or P2TR address whose confirmed outputs fund the deposit (and
    /// takes the change).
    #[arg(long)]
    pub from: Option<String>,
    /// With --psbt --format taproot: the x-only key of the reclaim leaf (the depositor's).
    #[arg(long)]
    pub depositor_key: Option<String>,
    /// The hemi node's JSON-RPC (the vault, the fees, the chain id, the key's UTXOs).
    #[arg(long, env = "HEMI_L2_RPC", default_value = "http://127.0.0.1:8545")]
    pub rpc_url: String,
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `hemi deposit reclaim` flags.
#[derive(Debug, Args)]
pub(crate) struct ReclaimArgs {
    /// The deposit's record (written by `hemi deposit --format taproot`).
    pub file: PathBuf,
    /// Where the BTC goes (default: the key's address of --key-type).
    #[arg(long)]
    pub to: Option<String>,
    #[command(flatten)]
    pub key: KeyArgs,
}

/// The record of a taproot deposit: what rebuilds its leaves, so its depositor can reclaim it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    version: String,
    network: String,
    txid: bitcoin::Txid,
    vout: u32,
    /// Satoshis.
    amount: u64,
    address: String,
    script_pub_key: String,
    chain_id: u64,
    recipient: L2Address,
    /// Satoshis.
    max_fee: u64,
    vault_key: XOnlyPublicKey,
    depositor_key: XOnlyPublicKey,
    reclaim_after: u16,
}

const RECORD_VERSION: &str = "hemi-rs/taproot-deposit/v1";

/// Runs `hemi deposit` or `hemi deposit reclaim`.
///
/// # Errors
/// Bad flags, a node that cannot be reached or refuses, too little BTC.
pub(crate) async fn run(args: DepositArgs) -> anyhow::Result<()> {
    match args.command {
        Some(DepositCommand::Reclaim(r)) => reclaim(r).await,
        None => make(args.make).await,
    }
}

/// `from`'s outputs that can be spent now: its confirmed outputs as the hemi node at `rpc_url`
/// indexes Bitcoin (coinbases once mature), and, when a Bitcoin node is at hand, less those a
/// mempool transaction already spends, plus the outputs to `from` of those transactions that
/// nothing spends yet (the change of one sent a moment ago), so a second payment before the
/// first confirms chains on it instead of conflicting with it.
///
/// # Errors
/// Either node could not be asked or answered nonsense.
pub(crate) async fn spendable_utxos(
    rpc_url: &str,
    from: &Address,
    bitcoin: Option<&BitcoinRpc>,
) -> anyhow::Result<Vec<(OutPoint, TxOut)>> {
    let confirmed = confirmed_utxos(rpc_url, from).await?;
    match bitcoin {
        Some(rpc) => without_mempool_spends(rpc, from, confirmed).await,
        None => Ok(confirmed),
    }
}

/// Bitcoin Core's mempool limit on a chain of unconfirmed ancestors.
const MAX_UNCONFIRMED_CHAIN: usize = 25;

/// `utxos` less what the mempool of `rpc` spends, plus the unspent outputs to `from` of the
/// transactions that spend them (followed down a chain of at most
/// [`MAX_UNCONFIRMED_CHAIN`]).
async fn without_mempool_spends(
    rpc: &BitcoinRpc,
    from: &Address,
    mut utxos: Vec<(OutPoint, TxOut)>,
) -> anyhow::Result<Vec<(OutPoint, TxOut)>> {
    let mine = from.script_pubkey();
    // Each spending transaction is expanded once, and an output listed once.
    let mut expanded = std::collections::HashSet::new();
    let mut listed: std::collections::HashSet<OutPoint> = utxos.iter().map(|(op, _)| *op).collect();
    for _ in 0..=MAX_UNCONFIRMED_CHAIN {
        if utxos.is_empty() {
            break;
        }
        let asked: Vec<serde_json::Value> = utxos
            .iter()
            .map(|(op, _)| json!({"txid": op.txid.to_string(), "vout": op.vout}))
            .collect();
        let answer: Vec<serde_json::Value> = rpc
            .call("gettxspendingprevout", json!([asked]))
            .await
            .context(
                "asking the Bitcoin node which outputs its mempool spends (gettxspendingprevout)",
            )?;
        let mut spenders = std::collections::BTreeSet::new();
        let mut spent = std::collections::HashSet::new();
        for (a, (op, _)) in answer.iter().zip(&utxos) {
            if let Some(t) = a["spendingtxid"].as_str() {
                spenders.insert(bitcoin::Txid::from_str(t).context("gettxspendingprevout")?);
                spent.insert(*op);
            }
        }
        if spent.is_empty() {
            break;
        }
        utxos.retain(|(op, _)| !spent.contains(op));
        for txid in spenders {
            if !expanded.insert(txid) {
                continue;
            }
            let tx = rpc
                .get_raw_transaction(&txid)
                .await
                .with_context(|| format!("reading mempool transaction {txid}"))?;
            for (vout, out) in tx.output.iter().enumerate() {
                let op = OutPoint::new(txid, vout as u32);
                if out.script_pubkey == mine && listed.insert(op) {
                    utxos.push((op, out.clone()));
                }
            }
        }
    }
    Ok(utxos)
}

/// `from`'s confirmed outputs that can be spent now, as the hemi node at `rpc_url` indexes
/// Bitcoin.
async fn confirmed_utxos(rpc_url: &str, from: &Address) -> anyhow::Result<Vec<(OutPoint, TxOut)>> {
    let tip = crate::config::l2_call(rpc_url, "hemi_btcTip", json!([])).await?;
    let tip = tip["height"].as_u64().context("the node's hemi_btcTip")?;
    let listed =
        crate::config::l2_call(rpc_url, "hemi_btcUtxos", json!([from.to_string()])).await?;
    let mut utxos: Vec<(OutPoint, TxOut)> = Vec::new();
    for u in listed.as_array().context("hemi_btcUtxos")? {
        let height = u["height"].as_u64().unwrap_or(u64::MAX);
        if u["coinbase"].as_bool() == Some(true) && tip + 1 < height + 100 {
            continue;
        }
        let txid = bitcoin::Txid::from_str(u["txid"].as_str().unwrap_or_default())?;
        let vout = u["vout"]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .context("vout")?;
        let value = Amount::from_sat(u["value"].as_u64().context("value")?);
        utxos.push((
            OutPoint::new(txid, vout),
            TxOut {
                value,
                script_pubkey: from.script_pubkey(),
            },
        ));
    }
    Ok(utxos)
}

pub(crate) fn parse_key(k: &KeyArgs) -> anyhow::Result<(Key, KeyKind, Network)> {
    let hexkey = k
        .key
        .as_deref()
        .context("--key (or HEMI_DEPOSIT_KEY) is required: the depositor's secret key")?;
    let key = crate::config::parse_secret_key("--key", hexkey)?;
    let kind = crate::popm::key_kind(&k.key_type)?;
    let network = crate::config::parse_network(&k.network)?;
    if !(1..=10_000).contains(&k.fee_rate) {
        bail!("--fee-rate {} is outside 1..=10000 sat/vB", k.fee_rate);
    }
    Ok((key, kind, network))
}

pub(crate) fn bitcoin_rpc(k: &KeyArgs) -> anyhow::Result<Option<BitcoinRpc>> {
    let Some(url) = &k.bitcoin_rpc else {
        return Ok(None);
    };
    Ok(Some(
        match &k.bitcoin_rpc_cookie {
            Some(c) => BitcoinRpc::with_cookie_file(url, c),
            None => BitcoinRpc::new(url),
        }
        .context("--bitcoin-rpc")?,
    ))
}

fn parse_btc(s: &str) -> anyhow::Result<Amount> {
    Amount::from_str_in(s, Denomination::Bitcoin)
        .with_context(|| format!("--amount {s:?} is not an amount of BTC (e.g. 1.5)"))
}

/// Who funds the deposit: a key that signs, or (`--psbt`) an address a wallet signs for.
enum Funder {
    Key(Box<Key>, KeyKind),
    Address(KeyKind),
}

/// The unsigned deposit paying `outputs` from `utxos` (all of `kind`), change to `change`:
/// sized with the witnesses a wallet will add (P2WPKH 72 + 33 bytes, P2TR 64).
fn unsigned_deposit(
    kind: KeyKind,
    utxos: &[(OutPoint, TxOut)],
    mut outputs: Vec<TxOut>,
    change: ScriptBuf,
    fee_rate: u64,
) -> anyhow::Result<bitcoin::Transaction> {
    let witness = match kind {
        KeyKind::P2tr => bitcoin::Witness::from_slice(&[vec![0u8; 64]]),
        _ => bitcoin::Witness::from_slice(&[vec![0u8; 72], vec![0u8; 33]]),
    };
    let have: Amount = utxos.iter().map(|(_, o)| o.value).sum();
    let pay: Amount = outputs.iter().map(|o| o.value).sum();
    // The transaction paying `outputs`, its inputs carrying `witness`.
    let tx_of = |outputs: Vec<TxOut>, witness: &bitcoin::Witness| bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: utxos
            .iter()
            .map(|(o, _)| bitcoin::TxIn {
                previous_output: *o,
                sequence: bitcoin::Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: witness.clone(),
                ..Default::default()
            })
            .collect(),
        output: outputs,
    };
    let vsize = |outputs: &[TxOut]| tx_of(outputs.to_vec(), &witness).vsize() as u64;
    let mut with_change = outputs.clone();
    with_change.push(TxOut {
        value: Amount::ZERO,
        script_pubkey: change.clone(),
    });
    let fee = Amount::from_sat(vsize(&with_change) * fee_rate);
    match have.checked_sub(pay + fee) {
        Some(c) if c >= change.minimal_non_dust() => outputs.push(TxOut {
            value: c,
            script_pubkey: change,
        }),
        _ => {
            let fee = Amount::from_sat(vsize(&outputs) * fee_rate);
            if have < pay + fee {
                bail!(
                    "the outputs hold {have}; the deposit and its fee need {}",
                    pay + fee
                );
            }
        }
    }
    Ok(tx_of(outputs, &bitcoin::Witness::new()))
}

/// Writes a taproot deposit's record (what its depositor needs to reclaim it).
fn write_record(
    args: &MakeArgs,
    network: Network,
    txid: bitcoin::Txid,
    amount: Amount,
    chain_id: u64,
    recipient: L2Address,
    d: &TaprootDeposit,
) -> anyhow::Result<PathBuf> {
    let record = Record {
        version: RECORD_VERSION.into(),
        network: network.to_string(),
        txid,
        vout: 0,
        amount: amount.to_sat(),
        address: Address::from_script(&d.script_pubkey(), network)
            .map(|a| a.to_string())
            .unwrap_or_default(),
        script_pub_key: hex::encode(d.script_pubkey().as_bytes()),
        chain_id,
        recipient,
        max_fee: d.max_fee.to_sat(),
        vault_key: d.vault_key,
        depositor_key: d.depositor_key,
        reclaim_after: d.reclaim_after,
    };
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("deposit-{txid}.json")));
    let text = serde_json::to_string_pretty(&record)? + "\n";
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "  taproot deposit output {}; its record: {}",
        record.address,
        path.display()
    );
    Ok(path)
}

async fn make(args: MakeArgs) -> anyhow::Result<()> {
    let (funder, network, from) = if args.psbt {
        let network = crate::config::parse_network(&args.key.network)?;
        if !(1..=10_000).contains(&args.key.fee_rate) {
            bail!(
                "--fee-rate {} is outside 1..=10000 sat/vB",
                args.key.fee_rate
            );
        }
        let text = args
            .from
            .as_deref()
            .context("--psbt needs --from ADDRESS")?;
        let from = Address::from_str(text)
            .with_context(|| format!("--from {text:?} is not a Bitcoin address"))?
            .require_network(network)
            .with_context(|| format!("--from {text:?} is not a {network} address"))?;
        let script = from.script_pubkey();
        let kind = if script.is_p2wpkh() {
            KeyKind::P2wpkh
        } else if script.is_p2tr() {
            KeyKind::P2tr
        } else {
            bail!("--from {text:?}: a P2WPKH or P2TR address (the ones hemi deposit sizes)");
        };
        (Funder::Address(kind), network, from)
    } else {
        let (key, kind, network) = parse_key(&args.key)?;
        let from = key.address(kind, network);
        (Funder::Key(Box::new(key), kind), network, from)
    };
    let amount = parse_btc(args.amount.as_deref().context("--amount is required")?)?;
    let recipient_s = args
        .recipient
        .as_deref()
        .context("--recipient is required")?;
    let recipient = L2Address::from_str(recipient_s)
        .with_context(|| format!("--recipient {recipient_s:?} is not an L2 address"))?;
    if recipient == L2Address::ZERO {
        bail!("--recipient is the zero address: hemiBTC minted to it would be burnt");
    }
    let tunnel = crate::config::l2_call(&args.rpc_url, "hemi_getTunnel", json!([])).await?;
    let vault = Address::from_str(tunnel["vaultAddress"].as_str().unwrap_or_default())
        .ok()
        .and_then(|a| a.require_network(network).ok())
        .with_context(|| {
            format!(
                "the node's vault {} is not a {network} address",
                tunnel["vaultAddress"]
            )
        })?;
    let min = tunnel["minDeposit"].as_u64().unwrap_or(0);
    let fee = tunnel["depositFee"].as_u64().unwrap_or(0);
    if amount.to_sat() < min {
        bail!("{amount} is below the tunnel's minimum deposit of {min} sat: it would be refused");
    }
    let chain_id = crate::config::l2_call(&args.rpc_url, "eth_chainId", json!([])).await?;
    let chain_id =
        u64::from_str_radix(chain_id.as_str().unwrap_or("").trim_start_matches("0x"), 16)
            .context("the node's eth_chainId")?;

    let (outputs, taproot) = match args.format.as_str() {
        "hemi" | "hemi-hex" => {
            let data = if args.format == "hemi" {
                recipient.as_slice().to_vec()
            } else {
                hex::encode(recipient.as_slice()).into_bytes()
            };
            let outs = vec![
                TxOut {
                    value: amount,
                    script_pubkey: vault.script_pubkey(),
                },
                TxOut {
                    value: Amount::ZERO,
                    script_pubkey: op_return_script(&data),
                },
            ];
            (outs, None)
        }
        "taproot" => {
            if args.reclaim_after == 0 {
                bail!("--reclaim-after must be 1..=65535 blocks");
            }
            // hemi_getTunnel gives the x-only key as 0x-prefixed hex (a B256).
            let vault_key = tunnel["vaultOutputKey"]
                .as_str()
                .and_then(|k| XOnlyPublicKey::from_str(k.trim_start_matches("0x")).ok())
                .context("the node's vaultOutputKey")?;
            let depositor_key = match (&funder, &args.depositor_key) {
                (_, Some(k)) => XOnlyPublicKey::from_str(k.trim_start_matches("0x"))
                    .with_context(|| format!("--depositor-key {k:?} is not an x-only key"))?,
                (Funder::Key(key, _), None) => key.x_only(),
                (Funder::Address(_), None) => bail!(
                    "--psbt --format taproot needs --depositor-key: the key that may reclaim it"
                ),
            };
            let d = TaprootDeposit {
                chain_id,
                recipient,
                max_fee: Amount::from_sat(args.max_fee.unwrap_or(fee)),
                vault_key,
                depositor_key,
                reclaim_after: args.reclaim_after,
            };
            let outs = vec![
                TxOut {
                    value: amount,
                    script_pubkey: d.script_pubkey(),
                },
                TxOut {
                    value: Amount::ZERO,
                    script_pubkey: d.hint_script(),
                },
            ];
            (outs, Some(d))
        }
        other => bail!("--format {other:?}: use hemi, hemi-hex or taproot"),
    };

    // Fund it from the confirmed outputs as the node indexes Bitcoin (mature coinbases), less
    // what the Bitcoin node's mempool spends already.
    let utxos = spendable_utxos(&args.rpc_url, &from, bitcoin_rpc(&args.key)?.as_ref()).await?;
    let margin = Amount::from_sat(args.key.fee_rate * 1_000);
    let chosen = select_largest_first(utxos, amount + margin);
    let sum: Amount = chosen.iter().map(|(_, o)| o.value).sum();
    if chosen.is_empty() {
        bail!(
            "{from} has no mature outputs that nothing spends yet, as the node at {} sees Bitcoin",
            args.rpc_url
        );
    }
    let what = || {
        format!(
            "paying {amount} from {from} ({sum} in {} outputs)",
            chosen.len()
        )
    };
    let (key, kind) = match &funder {
        Funder::Key(key, kind) => (key.as_ref(), *kind),
        Funder::Address(kind) => {
            let tx = unsigned_deposit(
                *kind,
                &chosen,
                outputs,
                from.script_pubkey(),
                args.key.fee_rate,
            )
            .with_context(what)?;
            let txid = tx.compute_txid();
            let mut psbt = bitcoin::psbt::Psbt::from_unsigned_tx(tx)?;
            for (input, (_, prevout)) in psbt.inputs.iter_mut().zip(&chosen) {
                input.witness_utxo = Some(prevout.clone());
            }
            use base64::Engine;
            println!(
                "{}",
                base64::engine::general_purpose::STANDARD.encode(psbt.serialize())
            );
            eprintln!(
                "unsigned PSBT of deposit {txid}: sign it with the wallet of {from} (e.g. \
                 bitcoin-cli walletprocesspsbt) and broadcast it"
            );
            if let Some(d) = taproot {
                write_record(&args, network, txid, amount, chain_id, recipient, &d)?;
            }
            return Ok(());
        }
    };
    let tx =
        build_payment(key, kind, &chosen, outputs, args.key.fee_rate as f64).with_context(what)?;
    let txid = tx.compute_txid();
    let raw = bitcoin::consensus::encode::serialize_hex(&tx);

    match bitcoin_rpc(&args.key)? {
        Some(rpc) => {
            rpc.send_raw_transaction(&tx)
                .await
                .map_err(|e| anyhow::anyhow!("Bitcoin node refused the deposit: {e}"))?;
        }
        None => {
            println!("{raw}");
            eprintln!("signed, not sent (no --bitcoin-rpc): broadcast with `bitcoin-cli sendrawtransaction`");
        }
    }
    let confs = tunnel["depositConfirmations"].as_u64().unwrap_or(0);
    eprintln!(
        "deposit {txid}:0 of {amount} for {recipient} ({} format)",
        args.format
    );
    eprintln!(
        "  mints {} after {confs} confirmations (tunnel fee {fee} sat)",
        amount.to_sat().saturating_sub(fee)
    );
    eprintln!("  where it is: hemi_getDeposit [\"{txid}\"]");
    if let Some(d) = taproot {
        let path = write_record(&args, network, txid, amount, chain_id, recipient, &d)?;
        eprintln!(
            "  if it is never minted: `hemi deposit reclaim {}` once it is {} blocks deep",
            path.display(),
            d.reclaim_after
        );
        let needed = confs.max(1) + u64::from(hemi_tunnel::contracts::SWEEP_BLOCKS);
        if u64::from(d.reclaim_after) < needed {
            eprintln!(
                "  warning: its reclaim path opens after {} blocks, before the {needed} the \
                 tunnel needs ({confs} confirmations + {} for the custodians' sweep): it will \
                 not be minted, only reclaimed",
                d.reclaim_after,
                hemi_tunnel::contracts::SWEEP_BLOCKS
            );
        }
    }
    if args.key.bitcoin_rpc.is_some() {
        println!("{txid}");
    }
    Ok(())
}

fn read_record(path: &Path) -> anyhow::Result<(Record, TaprootDeposit)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let r: Record = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a taproot deposit record", path.display()))?;
    if r.version != RECORD_VERSION {
        bail!(
            "{}: version {:?}, this hemi reads {RECORD_VERSION:?}",
            path.display(),
            r.version
        );
    }
    let d = TaprootDeposit {
        chain_id: r.chain_id,
        recipient: r.recipient,
        max_fee: Amount::from_sat(r.max_fee),
        vault_key: r.vault_key,
        depositor_key: r.depositor_key,
        reclaim_after: r.reclaim_after,
    };
    if hex::encode(d.script_pubkey().as_bytes()) != r.script_pub_key {
        bail!(
            "{}: its leaves do not build its scriptPubKey (the record was changed)",
            path.display()
        );
    }
    Ok((r, d))
}

async fn reclaim(args: ReclaimArgs) -> anyhow::Result<()> {
    let (key, kind, network) = parse_key(&args.key)?;
    let (record, deposit) = read_record(&args.file)?;
    let to: ScriptBuf = match &args.to {
        Some(a) => Address::from_str(a)
            .ok()
            .and_then(|a| a.require_network(network).ok())
            .with_context(|| format!("--to {a:?} is not a {network} address"))?
            .script_pubkey(),
        None => key.script_pubkey(kind),
    };
    let secret = bitcoin::secp256k1::SecretKey::from_slice(&key.secret_bytes())?;
    let keypair = Keypair::from_secret_key(hemi_btc_wallet::secp(), &secret);
    let tx = hemi_tunnel::reclaim_transaction(
        &deposit,
        OutPoint::new(record.txid, record.vout),
        Amount::from_sat(record.amount),
        to,
        args.key.fee_rate,
        &keypair,
    )?;
    let Some(rpc) = bitcoin_rpc(&args.key)? else {
        println!("{}", bitcoin::consensus::encode::serialize_hex(&tx));
        eprintln!("signed, not sent (no --bitcoin-rpc)");
        return Ok(());
    };
    match rpc.send_raw_transaction(&tx).await {
        Ok(txid) => {
            eprintln!(
                "reclaimed {}:{} ({} sat) in {txid}",
                record.txid, record.vout, record.amount
            );
            println!("{txid}");
            Ok(())
        }
        Err(RpcError::Rpc { message, .. }) if message.contains("non-BIP68-final") => bail!(
            "too early: the reclaim leaf opens {} blocks after the deposit's block (Bitcoin \
             node: {message})",
            deposit.reclaim_after
        ),
        Err(RpcError::Rpc { message, .. })
            if message.contains("missingorspent") || message.contains("missing-inputs") =>
        {
            bail!(
                "the deposit output {}:{} is spent or not confirmed (swept into the vault when \
                 it was minted, or reclaimed already; Bitcoin node: {message})",
                record.txid,
                record.vout
            )
        }
        Err(RpcError::Rpc { message, .. }) if message.contains("already in utxo set") => bail!(
            "already reclaimed: this reclaim, {}, is in the chain",
            tx.compute_txid()
        ),
        Err(e) => bail!("Bitcoin node refused the reclaim: {e}"),
    }
}
