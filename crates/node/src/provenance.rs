//! `hemi_getProvenance(btcTxidOrL2TxHash)`: the provenance document of one minted deposit
//! ([`hemi_provenance::Provenance`]), assembled from the Bitcoin index, the chain and the
//! finality tracker.

use std::str::FromStr;
use std::sync::Arc;

use alloy_primitives::{Bytes, B256};
use bitcoin::{BlockHash, Txid};
use hemi_btc_store::ChainStore;
use hemi_btc_view::{AsOf, BitcoinView, BlockRef};
use hemi_chain::Chain;
use hemi_finality::FinalityTracker;
use hemi_provenance::{Anchor, BitcoinInclusion, Deposit, Mint, Provenance};
use hemi_tunnel::contracts::{self, TUNNEL_MANAGER_ADDRESS};
use jsonrpsee::types::ErrorObjectOwned;

use crate::tunnel::Tunnel;

/// What the document is made from.
pub(crate) struct ProvenanceContext {
    pub(crate) tunnel: Tunnel,
    pub(crate) chain: Arc<Chain>,
    pub(crate) store: Arc<ChainStore>,
    pub(crate) finality: Arc<FinalityTracker>,
}

/// A request that cannot be answered (yet): JSON-RPC error -32000 with the reason.
fn not_ready(m: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32000, m.into(), None::<()>)
}

fn internal(m: impl std::fmt::Display) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32603, m.to_string(), None::<()>)
}

/// The mint of `(txid, vout)` in L2 block `n`: the transaction's index and the log's index in
/// its receipt.
fn find_mint(
    chain: &Chain,
    n: u64,
    txid: &Txid,
    vout: u32,
) -> Result<Option<(usize, usize)>, ErrorObjectOwned> {
    let Some(cached) = chain.block_with_receipts(n).map_err(internal)? else {
        return Ok(None);
    };
    let topic = contracts::deposit_confirmed_topic();
    let display = contracts::txid_display(txid);
    for (i, r) in cached.receipts.iter().enumerate() {
        for (j, l) in r.receipt.logs.iter().enumerate() {
            if l.address == TUNNEL_MANAGER_ADDRESS
                && l.topics().first() == Some(&topic)
                && l.topics().get(2) == Some(&display)
                && l.data.data.get(28..32) == Some(&vout.to_be_bytes()[..])
            {
                return Ok(Some((i, j)));
            }
        }
    }
    Ok(None)
}

impl ProvenanceContext {
    /// The headers after `from` up to `tip`, 80 bytes each.
    fn headers_after(&self, from: u32, tip: BlockRef) -> Result<Vec<Vec<u8>>, ErrorObjectOwned> {
        let mut out = Vec::with_capacity(tip.height.saturating_sub(from) as usize);
        for h in from + 1..=tip.height {
            let (_, header) = self
                .store
                .header_at(h)
                .map_err(internal)?
                .ok_or_else(|| not_ready(format!("Bitcoin header {h} is not indexed")))?;
            out.push(bitcoin::consensus::serialize(&header));
        }
        Ok(out)
    }

    /// `txid`'s inclusion: the transaction, its merkleblock, the headers to `tip`.
    fn inclusion(
        &self,
        txid: Txid,
        tip: BlockRef,
    ) -> Result<(BitcoinInclusion, BlockHash), ErrorObjectOwned> {
        let indexed = self
            .store
            .transaction(&txid, AsOf::Tip)
            .map_err(internal)?
            .ok_or_else(|| {
                not_ready(format!(
                    "Bitcoin transaction {txid} is not in the best chain"
                ))
            })?;
        let at = indexed.location.block;
        let block = self
            .store
            .block(&at.hash)
            .map_err(internal)?
            .ok_or_else(|| internal(format!("Bitcoin block {} is not stored", at.hash)))?;
        Ok((
            BitcoinInclusion {
                tx: bitcoin::consensus::serialize(&indexed.tx),
                merkle_block: hemi_provenance::merkle_block(&block, txid),
                headers: self.headers_after(at.height, tip)?,
            },
            at.hash,
        ))
    }

    /// The deposit and L2 block that `id` names: a Bitcoin txid, or the hash of the L2
    /// transaction that minted.
    fn resolve(&self, id: &str) -> Result<(Txid, u32, u64), ErrorObjectOwned> {
        let digits = id.trim_start_matches("0x");
        if let (true, Ok(hash)) = (id.starts_with("0x"), B256::from_str(id)) {
            if let Some((n, i)) = self.chain.tx_location(&hash).map_err(internal)? {
                let receipts = self
                    .chain
                    .receipts(n)
                    .map_err(internal)?
                    .ok_or_else(|| internal("receipts missing"))?;
                let topic = contracts::deposit_confirmed_topic();
                let found = receipts.get(i as usize).and_then(|r| {
                    r.receipt.logs.iter().find(|l| {
                        l.address == TUNNEL_MANAGER_ADDRESS && l.topics().first() == Some(&topic)
                    })
                });
                let Some(log) = found else {
                    return Err(not_ready(format!(
                        "L2 transaction {hash} minted nothing (no DepositConfirmed log)"
                    )));
                };
                let mut display = log.topics()[2].0;
                display.reverse();
                let txid = <Txid as bitcoin::hashes::Hash>::from_byte_array(display);
                let vout = log
                    .data
                    .data
                    .get(28..32)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map_or(0, u32::from_be_bytes);
                return Ok((txid, vout, n));
            }
        }
        let txid = Txid::from_str(digits).map_err(|_| {
            ErrorObjectOwned::owned(
                -32602,
                format!("{id:?} is neither a Bitcoin txid nor the hash of an L2 transaction"),
                None::<()>,
            )
        })?;
        let deposits = crate::tunnel::TunnelContext {
            tunnel: self.tunnel.clone(),
            chain: self.chain.clone(),
            bitcoin: self.store.clone() as Arc<dyn BitcoinView>,
        };
        let status = deposits.deposit(txid, None)?;
        if status["status"] != "minted" {
            return Err(not_ready(format!(
                "deposit {txid} is not minted ({}): {}",
                status["status"].as_str().unwrap_or("?"),
                status["reason"].as_str().unwrap_or("")
            )));
        }
        let vout = status["vout"].as_u64().unwrap_or(0) as u32;
        let n = status["mintedIn"]["block"].as_u64().unwrap_or(0);
        Ok((txid, vout, n))
    }

    /// The document for `id`.
    pub(crate) fn provenance(&self, id: &str) -> Result<Provenance, ErrorObjectOwned> {
        let (txid, vout, n) = self.resolve(id)?;
        let (tx_index, log_index) = find_mint(&self.chain, n, &txid, vout)?
            .ok_or_else(|| internal(format!("L2 block {n} has no mint of {txid}:{vout}")))?;
        let fin = self
            .finality
            .finality(n)
            .map_err(internal)?
            .ok_or_else(|| internal(format!("L2 block {n} missing")))?;
        let Some(publication) = fin.effective_publication else {
            let k = fin.keystone.map(|k| k.number);
            return Err(not_ready(format!(
                "L2 block {n} is not anchored in Bitcoin yet: {} has no PoP publication in \
                 Bitcoin's best chain (the devnet's built-in PoP miner, or `hemi popm`, \
                 publishes it once the keystone exists and a Bitcoin block confirms it)",
                k.map_or("its keystone".to_string(), |k| format!("keystone {k}"))
            )));
        };
        let tip = self.store.tip().map_err(internal)?;
        if publication.height > tip.height {
            return Err(not_ready("the Bitcoin index moved; ask again"));
        }
        let keystone = self
            .finality
            .keystone_at(publication.keystone_number)
            .ok_or_else(|| internal(format!("keystone {} missing", publication.keystone_number)))?;
        let cached = self
            .chain
            .block_with_receipts(n)
            .map_err(internal)?
            .ok_or_else(|| internal(format!("L2 block {n} missing")))?;
        let encoded: Vec<Vec<u8>> = cached.receipts.iter().map(|r| r.encoded_2718()).collect();
        let mut headers = Vec::new();
        for k in n + 1..=publication.keystone_number {
            let h = self
                .chain
                .header(k)
                .map_err(internal)?
                .ok_or_else(|| internal(format!("L2 header {k} missing")))?;
            headers.push(Bytes::from(alloy_rlp::encode(&h)));
        }
        let (deposit_inclusion, _) = self.inclusion(txid, tip)?;
        let (pop_inclusion, _) = self.inclusion(publication.txid, tip)?;
        let validators = self.chain.spec().validators.clone();
        // One key seals with its signature; a set's block names the validator that built it as
        // its beneficiary and carries the set's commit certificate instead.
        let (version, sequencer, certificate) = if validators.is_empty() {
            let signer = hemi_chain::block::signer(
                self.chain.spec().chain_id,
                cached.block.hash,
                &cached.block.seal,
            )
            .map_err(internal)?;
            (hemi_provenance::VERSION, signer, None)
        } else {
            let cert = cached.block.certificate.as_ref().ok_or_else(|| {
                internal(format!("L2 block {n} has no commit certificate stored"))
            })?;
            (
                hemi_provenance::VERSION_SET,
                cached.block.header.beneficiary,
                Some(Bytes::from(cert.encode())),
            )
        };
        Ok(Provenance {
            version: version.to_string(),
            network: self.tunnel.network.to_core_arg().to_string(),
            chain_id: self.chain.spec().chain_id,
            sequencer,
            validators,
            tunnel_manager: TUNNEL_MANAGER_ADDRESS,
            deposit: Deposit {
                txid: txid.to_string(),
                vout,
                vault_script: self.tunnel.vault.script_pubkey().to_bytes(),
                inclusion: deposit_inclusion,
            },
            mint: Mint {
                header: Bytes::from(alloy_rlp::encode(&cached.block.header)),
                seal: Bytes::copy_from_slice(&cached.block.seal[..]),
                certificate,
                receipt_index: tx_index as u64,
                receipt: Bytes::from(encoded[tx_index].clone()),
                receipt_proof: hemi_provenance::receipt_proof(&encoded, tx_index),
                log_index: log_index as u64,
                headers,
            },
            anchor: Anchor {
                keystone: keystone.keystone.abbreviate().to_bytes().to_vec(),
                pop_txid: publication.txid.to_string(),
                inclusion: pop_inclusion,
            },
        })
    }
}

/// `hemi_getProvenance`.
pub(crate) fn provenance_module(
    ctx: ProvenanceContext,
) -> anyhow::Result<jsonrpsee::RpcModule<ProvenanceContext>> {
    let mut m = jsonrpsee::RpcModule::new(ctx);
    m.register_blocking_method(
        "hemi_getProvenance",
        |params, ctx, _| -> Result<serde_json::Value, ErrorObjectOwned> {
            let bad = || {
                ErrorObjectOwned::owned(-32602, "expected params [btcTxidOrL2TxHash]", None::<()>)
            };
            let v: Vec<serde_json::Value> = params.parse().map_err(|_| bad())?;
            let id = v.first().and_then(|v| v.as_str()).ok_or_else(bad)?;
            let doc = ctx.provenance(id)?;
            serde_json::to_value(&doc).map_err(internal)
        },
    )?;
    m.register_blocking_method(
        "hemi_verifyProvenance",
        |params, ctx, _| -> Result<serde_json::Value, ErrorObjectOwned> {
            let bad = |m: String| ErrorObjectOwned::owned(-32602, m, None::<()>);
            let v: Vec<serde_json::Value> = params
                .parse()
                .map_err(|_| bad("expected params [provenanceDocument]".into()))?;
            let doc = v
                .first()
                .ok_or_else(|| bad("expected params [provenanceDocument]".into()))?;
            let doc = hemi_provenance::Provenance::from_json(&doc.to_string())
                .map_err(|e| bad(format!("not a provenance document: {e}")))?;
            // The same checks as `hemi verify`, at this node's superfinality depth. On a set's
            // chain, against the set of this node's spec (not the document's word for it); a
            // single key's chain takes no set's document.
            let validators = &ctx.chain.spec().validators;
            if validators.is_empty() && doc.mint.certificate.is_some() {
                return Err(ErrorObjectOwned::owned(
                    -32000,
                    "link 2 (L2 ordering): this node's chain is sealed by one key; the document is a sequencer set's",
                    None::<()>,
                ));
            }
            let opts = hemi_provenance::VerifyOptions {
                superfinality_depth: ctx.finality.params().superfinality_depth,
                sequencer: None,
                validators: (!validators.is_empty()).then(|| validators.clone()),
            };
            let report = hemi_provenance::verify(&doc, &opts)
                .map_err(|e| ErrorObjectOwned::owned(-32000, e.to_string(), None::<()>))?;
            serde_json::to_value(&report).map_err(internal)
        },
    )?;
    Ok(m)
}
