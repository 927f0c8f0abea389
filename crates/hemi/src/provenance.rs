//! `hemi provenance ID -o proof.json` (ask a node for a deposit's provenance document) and
//! `hemi verify proof.json` (check it offline; `--bitcoin-rpc` also asks Bitcoin Core).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use hemi_btc_rpc_client::BitcoinRpc;
use hemi_provenance::{Provenance, VerifyOptions};
use serde_json::{json, Value};

/// `hemi provenance` flags.
#[derive(Debug, Args)]
pub(crate) struct ProvenanceArgs {
    /// The deposit's Bitcoin txid, or the hash of the L2 transaction that minted it.
    pub id: String,
    /// Where to write the document (default: standard output).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The hemi node's JSON-RPC.
    #[arg(long, env = "HEMI_L2_RPC", default_value = "http://127.0.0.1:8545")]
    pub rpc_url: String,
}

/// `hemi verify` flags.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The provenance document (hemi-rs/provenance/v1 JSON, or v2 from a sequencer set).
    pub file: PathBuf,
    /// Also ask this Bitcoin Core (`verifytxoutproof` for both merkleblocks, `getblockheader`
    /// for their confirmations on its best chain); may carry user:password@.
    #[arg(long, env = "HEMI_BITCOIN_RPC")]
    pub bitcoin_rpc: Option<String>,
    /// Bitcoin confirmations of the PoP publication that make the mint superfinal.
    #[arg(long, default_value_t = 10)]
    pub superfinality_depth: u32,
    /// The sequencer address the mint block's seal must be from (default: the document's).
    /// Under a set: the validator that built the block.
    #[arg(long)]
    pub sequencer: Option<String>,
    /// Under a sequencer set: the validators whose quorum must certify the mint block, as a
    /// validators file (what `hemi node --validators` reads) or comma-separated addresses
    /// (default: the document's).
    #[arg(long, value_name = "FILE|ADDRESSES")]
    pub validators: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `hemi provenance`.
pub(crate) async fn provenance(args: ProvenanceArgs) -> anyhow::Result<()> {
    let result =
        crate::config::l2_call(&args.rpc_url, "hemi_getProvenance", json!([args.id])).await?;
    let doc: Provenance =
        serde_json::from_value(result).context("the node's answer is not a provenance document")?;
    let text = doc.to_json() + "\n";
    match &args.output {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {} ({} bytes): deposit {}:{}",
                path.display(),
                text.len(),
                doc.deposit.txid,
                doc.deposit.vout
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// `hemi verify`.
pub(crate) async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    let doc = Provenance::from_json(&text)?;
    let sequencer = match &args.sequencer {
        Some(s) => Some(s.parse().with_context(|| format!("--sequencer {s:?}"))?),
        None => None,
    };
    let validators = match &args.validators {
        Some(v) => Some(hemi_node::validator_addresses(v)?),
        None => None,
    };
    let opts = VerifyOptions {
        superfinality_depth: args.superfinality_depth,
        sequencer,
        validators,
    };
    let report = hemi_provenance::verify(&doc, &opts)?;
    let mut core = Value::Null;
    if let Some(url) = &args.bitcoin_rpc {
        let rpc = BitcoinRpc::new(url).context("--bitcoin-rpc")?;
        let mut checks = Vec::new();
        for (link, inc, txid, block) in [
            (
                "link 1 (BTC lock)",
                &doc.deposit.inclusion,
                report.deposit_txid,
                report.deposit_block,
            ),
            (
                "link 3 (PoP anchoring)",
                &doc.anchor.inclusion,
                report.pop_txid,
                report.pop_block,
            ),
        ] {
            let proved: Vec<String> = rpc
                .call("verifytxoutproof", json!([hex::encode(&inc.merkle_block)]))
                .await
                .with_context(|| format!("{link}: Bitcoin Core's verifytxoutproof"))?;
            if !proved.contains(&txid.to_string()) {
                bail!("{link}: Bitcoin Core's verifytxoutproof does not prove {txid} (block not in its best chain?)");
            }
            let header: Value = rpc
                .call("getblockheader", json!([block.to_string(), true]))
                .await
                .with_context(|| format!("{link}: Bitcoin Core's getblockheader {block}"))?;
            let confirmations = header["confirmations"].as_i64().unwrap_or(-1);
            if confirmations < 1 {
                bail!("{link}: Bitcoin block {block} is not in Bitcoin Core's best chain");
            }
            checks.push(json!({"link": link, "txid": txid.to_string(), "block": block.to_string(), "confirmations": confirmations}));
        }
        core = json!(checks);
    }
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["bitcoinCore"] = core;
        println!("{v}");
    } else {
        println!("{report}");
        if let Value::Array(checks) = &core {
            for c in checks {
                println!(
                    "   Bitcoin Core: {} verifytxoutproof ok, block {} has {} confirmations on its best chain",
                    c["link"].as_str().unwrap_or(""),
                    c["block"].as_str().unwrap_or(""),
                    c["confirmations"]
                );
            }
        }
    }
    Ok(())
}
