//! Checking a document offline: every hash, branch, proof, seal and header link.

use std::str::FromStr;

use alloy_consensus::Header as L2Header;
use alloy_primitives::{keccak256, Address, B256};
use alloy_rlp::Decodable;
use alloy_trie::Nibbles;
use bitcoin::block::Header as BtcHeader;
use bitcoin::consensus::deserialize;
use bitcoin::{BlockHash, MerkleBlock, Network, Transaction, Txid};
use hemi_chain::block::L2Receipt;
use hemi_keystone::AbbreviatedKeystone;
use hemi_tunnel::contracts::{deposit_confirmed_topic, txid_display};

use crate::doc::{BitcoinInclusion, Provenance};

/// The parts of the document, as messages name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// The JSON itself: shape, hex, version.
    Document,
    /// Link 1: the deposit's Bitcoin inclusion.
    Deposit,
    /// Link 2: the L2 block that minted, its seal and its place below the keystone.
    Mint,
    /// Link 3: the keystone's PoP publication in Bitcoin.
    Anchor,
}

impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Link::Document => "document",
            Link::Deposit => "link 1 (BTC lock)",
            Link::Mint => "link 2 (L2 ordering)",
            Link::Anchor => "link 3 (PoP anchoring)",
        })
    }
}

/// Why a document does not verify: the broken link and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{link}: {message}")]
pub struct VerifyError {
    /// Which link.
    pub link: Link,
    /// What is wrong.
    pub message: String,
}

impl VerifyError {
    pub(crate) fn new(link: Link, message: impl Into<String>) -> Self {
        VerifyError {
            link,
            message: message.into(),
        }
    }
}

/// What the verifier trusts from outside the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Bitcoin confirmations (tip height − publication height, Hemi's measure) that make the
    /// anchoring superfinal.
    pub superfinality_depth: u32,
    /// The sequencer the seal must be from; `None` takes the document's word.
    pub sequencer: Option<Address>,
    /// The validator set whose quorum must certify the mint block; `None` takes the
    /// document's word. Given for a v1 (single-key) document, it fails: such a document
    /// carries no certificate.
    pub validators: Option<Vec<Address>>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            superfinality_depth: 10,
            sequencer: None,
            validators: None,
        }
    }
}

/// What a verified document shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The deposit's txid.
    pub deposit_txid: Txid,
    /// Its vault output.
    pub deposit_vout: u32,
    /// Satoshis locked.
    pub amount: u64,
    /// Who got hemiBTC.
    pub recipient: Address,
    /// The deposit's Bitcoin block.
    pub deposit_block: BlockHash,
    /// Its confirmations up to the document's tip.
    pub deposit_confirmations: u32,
    /// The L2 block that minted.
    pub mint_block: u64,
    /// Its hash.
    pub mint_block_hash: B256,
    /// hemiBTC units minted.
    pub minted: u64,
    /// The sealing sequencer (under a set: the mint block's proposer).
    pub sequencer: Address,
    /// Under a set: the validators whose precommits certify the mint block, in the
    /// certificate's order; empty for a single-key chain.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub certified_by: Vec<Address>,
    /// Under a set: its size (the quorum is more than two thirds of it); 0 for a single key.
    #[serde(skip_serializing_if = "is_zero")]
    pub validator_count: usize,
    /// The anchoring keystone's L2 block.
    pub keystone_block: u64,
    /// Its hash.
    pub keystone_block_hash: B256,
    /// The PoP transaction.
    pub pop_txid: Txid,
    /// Its Bitcoin block.
    pub pop_block: BlockHash,
    /// Tip height − its height (Hemi's measure of a publication's depth).
    pub pop_confirmations: u32,
    /// Whether that reaches the superfinality depth.
    pub superfinal: bool,
    /// The depth checked against.
    pub superfinality_depth: u32,
    /// The Bitcoin tip both proofs reach.
    pub bitcoin_tip: BlockHash,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "1. BTC lock      ok: {}:{} locks {} sat for {} in Bitcoin block {} ({} confirmations)",
            self.deposit_txid,
            self.deposit_vout,
            self.amount,
            self.recipient,
            self.deposit_block,
            self.deposit_confirmations
        )?;
        writeln!(
            f,
            "2. L2 ordering   ok: L2 block {} ({}) {} {}{} minted {} hemiBTC units; {} L2 \
             block(s) link it to keystone block {}",
            self.mint_block,
            self.mint_block_hash,
            if self.validator_count == 0 {
                "sealed by"
            } else {
                "built by"
            },
            self.sequencer,
            if self.validator_count == 0 {
                String::new()
            } else {
                format!(
                    " and certified by {} of {} validators",
                    self.certified_by.len(),
                    self.validator_count
                )
            },
            self.minted,
            self.keystone_block - self.mint_block,
            self.keystone_block
        )?;
        write!(
            f,
            "3. PoP anchoring ok: keystone {} published by {} in Bitcoin block {}, {} block(s) \
             on top ({} confirmations): {} (depth {})",
            self.keystone_block,
            self.pop_txid,
            self.pop_block,
            self.pop_confirmations,
            self.pop_confirmations.saturating_add(1),
            if self.superfinal {
                "superfinal"
            } else {
                "not superfinal yet"
            },
            self.superfinality_depth
        )
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn parse_network(s: &str) -> Result<Network, VerifyError> {
    Network::from_core_arg(s)
        .map_err(|_| VerifyError::new(Link::Document, format!("unknown Bitcoin network {s:?}")))
}

fn parse_txid(s: &str, link: Link) -> Result<Txid, VerifyError> {
    Txid::from_str(s).map_err(|_| VerifyError::new(link, format!("not a txid: {s:?}")))
}

/// Checks a header's proof of work against its own target, and that target against the
/// network's limit.
fn check_pow(h: &BtcHeader, network: Network, link: Link) -> Result<BlockHash, VerifyError> {
    let limit = bitcoin::params::Params::new(network).max_attainable_target;
    let target = h.target();
    if target > limit {
        return Err(VerifyError::new(
            link,
            format!(
                "header {} claims a target above {network}'s limit",
                h.block_hash()
            ),
        ));
    }
    h.validate_pow(target).map_err(|_| {
        VerifyError::new(
            link,
            format!("header {} lacks its proof of work", h.block_hash()),
        )
    })
}

/// What one inclusion proves: the transaction, its block, the tip reached and the number of
/// headers above the block.
struct Included {
    tx: Transaction,
    block: BlockHash,
    tip: BlockHash,
    above: u32,
}

fn check_inclusion(
    inc: &BitcoinInclusion,
    txid: Txid,
    network: Network,
    link: Link,
) -> Result<Included, VerifyError> {
    let err = |m: String| VerifyError::new(link, m);
    let tx: Transaction =
        deserialize(&inc.tx).map_err(|e| err(format!("transaction does not decode: {e}")))?;
    if tx.compute_txid() != txid {
        return Err(err(format!(
            "transaction hashes to {}, not {txid}",
            tx.compute_txid()
        )));
    }
    if tx.base_size() == 64 {
        return Err(err(
            "a 64-byte transaction cannot be told from an inner Merkle node; refused".into(),
        ));
    }
    let mb: MerkleBlock = deserialize(&inc.merkle_block)
        .map_err(|e| err(format!("merkleblock does not decode: {e}")))?;
    let (mut matches, mut indexes) = (Vec::new(), Vec::new());
    mb.extract_matches(&mut matches, &mut indexes)
        .map_err(|e| err(format!("merkleblock: {e}")))?;
    if !matches.contains(&txid) {
        return Err(err(format!("merkleblock does not prove {txid}")));
    }
    let block = check_pow(&mb.header, network, link)?;
    let mut tip = block;
    for (i, raw) in inc.headers.iter().enumerate() {
        let h: BtcHeader =
            deserialize(raw).map_err(|e| err(format!("header {} does not decode: {e}", i + 1)))?;
        if h.prev_blockhash != tip {
            return Err(err(format!(
                "header {} ({}) does not follow {tip}",
                i + 1,
                h.block_hash()
            )));
        }
        tip = check_pow(&h, network, link)?;
    }
    Ok(Included {
        tx,
        block,
        tip,
        above: u32::try_from(inc.headers.len()).unwrap_or(u32::MAX),
    })
}

fn decode_l2_header(bytes: &[u8], what: &str) -> Result<(L2Header, B256), VerifyError> {
    let mut buf = bytes;
    let h = L2Header::decode(&mut buf)
        .map_err(|e| VerifyError::new(Link::Mint, format!("{what} does not decode: {e}")))?;
    if !buf.is_empty() {
        return Err(VerifyError::new(
            Link::Mint,
            format!("{what}: bytes after the header"),
        ));
    }
    Ok((h, keccak256(bytes)))
}

/// A single key's block: its seal recovers to the sequencer.
fn check_seal(
    doc: &Provenance,
    opts: &VerifyOptions,
    header: &L2Header,
    hash: B256,
) -> Result<Address, VerifyError> {
    let seal: [u8; 65] = doc.mint.seal.as_ref().try_into().map_err(|_| {
        VerifyError::new(
            Link::Mint,
            format!("the seal is {} bytes, not 65", doc.mint.seal.len()),
        )
    })?;
    let signer = hemi_chain::block::signer(doc.chain_id, hash, &hemi_chain::Seal::from(seal))
        .map_err(|e| VerifyError::new(Link::Mint, format!("the seal: {e}")))?;
    let sequencer = opts.sequencer.unwrap_or(doc.sequencer);
    if signer != sequencer {
        return Err(VerifyError::new(
            Link::Mint,
            format!(
                "block {} is sealed by {signer}, not the sequencer {sequencer}",
                header.number
            ),
        ));
    }
    Ok(signer)
}

/// A set's block: its sequencer (the header's beneficiary, the proposer that built it) is one
/// of the validators, and its certificate holds precommits of more than two thirds of them for
/// its hash (`hemi_chain::ValidatorSet`, the check every follower runs). Answers the sequencer
/// and the certificate's signers.
fn check_certificate(
    doc: &Provenance,
    opts: &VerifyOptions,
    header: &L2Header,
    hash: B256,
) -> Result<(Address, Vec<Address>), VerifyError> {
    let err = |m: String| VerifyError::new(Link::Mint, m);
    let Some(raw) = &doc.mint.certificate else {
        return Err(err(format!(
            "block {} carries no commit certificate, but a validator set was given (a \
             single-key chain's document)",
            header.number
        )));
    };
    let set = opts.validators.as_ref().unwrap_or(&doc.validators);
    if set.is_empty() || set.len() > hemi_chain::certificate::MAX_VALIDATORS {
        return Err(err(format!(
            "a validator set of {} is not one a chain can have",
            set.len()
        )));
    }
    let proposer = header.beneficiary;
    let named = opts.sequencer.unwrap_or(doc.sequencer);
    if proposer != named {
        return Err(err(format!(
            "block {} was built by {proposer}, not the sequencer {named}",
            header.number
        )));
    }
    if !set.contains(&proposer) {
        return Err(err(format!(
            "block {} was built by {proposer}, which is not one of the {} validators",
            header.number,
            set.len()
        )));
    }
    let cert =
        hemi_chain::Certificate::decode(raw).map_err(|e| err(format!("the certificate: {e}")))?;
    hemi_chain::SealVerifier::verify(
        &hemi_chain::ValidatorSet(set.clone()),
        doc.chain_id,
        header.number,
        hash,
        &hemi_chain::Seal::ZERO,
        Some(&cert),
    )
    .map_err(|e| err(format!("the certificate: {e}")))?;
    let signers = cert
        .signers(doc.chain_id, header.number, hash)
        .map_err(|e| err(format!("the certificate: {e}")))?;
    Ok((proposer, signers))
}

/// Verifies `doc` offline.
///
/// # Errors
/// [`VerifyError`] naming the first broken link and what breaks it.
pub fn verify(doc: &Provenance, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    doc.check_version()?;
    let network = parse_network(&doc.network)?;

    // 1. The BTC lock.
    let d = &doc.deposit;
    let txid = parse_txid(&d.txid, Link::Deposit)?;
    let lock = check_inclusion(&d.inclusion, txid, network, Link::Deposit)?;
    let vault = bitcoin::ScriptBuf::from_bytes(d.vault_script.clone());
    // Hemi's OP_RETURN formats pay the vault itself; a taproot deposit pays an output whose
    // deposit leaf names the vault's output key (rebuilt from its HEMT hint).
    let found = match hemi_tunnel::parse_op_return_deposit(&lock.tx, &vault) {
        Ok(None) if vault.is_p2tr() => {
            match bitcoin::XOnlyPublicKey::from_slice(&vault.as_bytes()[2..]) {
                Ok(key) => hemi_tunnel::find_taproot_deposit(&lock.tx, key)
                    .map(|found| found.map(|(_, dep)| dep)),
                Err(_) => Ok(None),
            }
        }
        other => other,
    };
    let deposit = match found {
        Ok(Some(dep)) if dep.outpoint.vout == d.vout => dep,
        Ok(Some(dep)) => {
            return Err(VerifyError::new(
                Link::Deposit,
                format!(
                    "output {} is the deposit, not output {}",
                    dep.outpoint.vout, d.vout
                ),
            ))
        }
        Ok(None) => {
            return Err(VerifyError::new(
                Link::Deposit,
                "the transaction does not pay the vault",
            ))
        }
        Err(e) => {
            return Err(VerifyError::new(
                Link::Deposit,
                format!("not a deposit: {e}"),
            ))
        }
    };

    // 2. The L2 ordering.
    let m = &doc.mint;
    let (header, hash) = decode_l2_header(&m.header, "the mint block's header")?;
    let (sequencer, certified_by) = if m.certificate.is_some() || opts.validators.is_some() {
        check_certificate(doc, opts, &header, hash)?
    } else {
        (check_seal(doc, opts, &header, hash)?, Vec::new())
    };
    let key = Nibbles::unpack(alloy_rlp::encode_fixed_size(&(m.receipt_index as usize)));
    alloy_trie::proof::verify_proof(
        header.receipts_root,
        key,
        Some(m.receipt.to_vec()),
        &m.receipt_proof,
    )
    .map_err(|e| {
        VerifyError::new(
            Link::Mint,
            format!(
                "receipt {} is not under block {}'s receipts root {}: {e}",
                m.receipt_index, header.number, header.receipts_root
            ),
        )
    })?;
    let receipt = L2Receipt::decode_2718(&m.receipt)
        .map_err(|e| VerifyError::new(Link::Mint, format!("the receipt: {e}")))?;
    if !receipt.receipt.status.coerce_status() {
        return Err(VerifyError::new(Link::Mint, "the mint transaction failed"));
    }
    let log = usize::try_from(m.log_index)
        .ok()
        .and_then(|i| receipt.receipt.logs.get(i))
        .ok_or_else(|| {
            VerifyError::new(
                Link::Mint,
                format!("the receipt has no log {}", m.log_index),
            )
        })?;
    let topics = log.topics();
    let expected_topics = [
        deposit_confirmed_topic(),
        B256::left_padding_from(deposit.recipient.as_slice()),
        txid_display(&txid),
    ];
    if log.address != doc.tunnel_manager || topics != expected_topics {
        return Err(VerifyError::new(
            Link::Mint,
            format!(
                "log {} is not the tunnel's DepositConfirmed for {txid} to {}",
                m.log_index, deposit.recipient
            ),
        ));
    }
    let word = |i: usize| -> u64 {
        log.data
            .data
            .get(i * 32 + 24..i * 32 + 32)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(u64::MAX, u64::from_be_bytes)
    };
    let (vout, gross, net) = (word(0), word(1), word(2));
    if log.data.data.len() != 96
        || vout != u64::from(d.vout)
        || gross != deposit.amount.to_sat()
        || net > gross
    {
        return Err(VerifyError::new(
            Link::Mint,
            format!(
                "the mint says output {vout}, {gross} sat gross, {net} net; the deposit is output {} of {} sat",
                d.vout,
                deposit.amount.to_sat()
            ),
        ));
    }
    let mut last = (header.clone(), hash);
    for (i, raw) in m.headers.iter().enumerate() {
        let (h, hh) = decode_l2_header(raw, &format!("L2 header {}", i + 1))?;
        if h.parent_hash != last.1 || h.number != last.0.number + 1 {
            return Err(VerifyError::new(
                Link::Mint,
                format!(
                    "L2 header {} (block {}) does not follow block {} ({})",
                    i + 1,
                    h.number,
                    last.0.number,
                    last.1
                ),
            ));
        }
        last = (h, hh);
    }
    let (keystone_header, keystone_hash) = last;

    // 3. The PoP anchoring.
    let a = &doc.anchor;
    let ks = AbbreviatedKeystone::from_bytes(&a.keystone)
        .map_err(|e| VerifyError::new(Link::Anchor, format!("the keystone: {e}")))?;
    if u64::from(ks.l2_block_number) != keystone_header.number
        || ks.ep_hash[..] != keystone_hash[..12]
        || ks.parent_ep_hash[..] != keystone_header.parent_hash[..11]
        || ks.state_root != keystone_header.state_root.0
    {
        return Err(VerifyError::new(
            Link::Anchor,
            format!(
                "the keystone (block {}) does not abbreviate L2 block {} ({keystone_hash}), the \
                 last of link 2's headers",
                ks.l2_block_number, keystone_header.number
            ),
        ));
    }
    let pop_txid = parse_txid(&a.pop_txid, Link::Anchor)?;
    let pop = check_inclusion(&a.inclusion, pop_txid, network, Link::Anchor)?;
    let carries = pop
        .tx
        .output
        .iter()
        .any(|o| AbbreviatedKeystone::from_pop_script(&o.script_pubkey).is_ok_and(|k| k == ks));
    if !carries {
        return Err(VerifyError::new(
            Link::Anchor,
            format!("PoP transaction {pop_txid} does not carry the keystone"),
        ));
    }
    if pop.tip != lock.tip {
        return Err(VerifyError::new(
            Link::Anchor,
            format!(
                "its Bitcoin headers end at {}, link 1's at {}: one of the two header lists was \
                 altered, or they are not one chain",
                pop.tip, lock.tip
            ),
        ));
    }
    Ok(Report {
        deposit_txid: txid,
        deposit_vout: d.vout,
        amount: deposit.amount.to_sat(),
        recipient: deposit.recipient,
        deposit_block: lock.block,
        deposit_confirmations: lock.above.saturating_add(1),
        mint_block: header.number,
        mint_block_hash: hash,
        minted: net,
        sequencer,
        validator_count: if certified_by.is_empty() {
            0
        } else {
            opts.validators.as_ref().unwrap_or(&doc.validators).len()
        },
        certified_by,
        keystone_block: keystone_header.number,
        keystone_block_hash: keystone_hash,
        pop_txid,
        pop_block: pop.block,
        pop_confirmations: pop.above,
        superfinal: pop.above >= opts.superfinality_depth,
        superfinality_depth: opts.superfinality_depth,
        bitcoin_tip: lock.tip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_proof_verifies_against_the_receipts_root_for_every_index() {
        for len in [1usize, 2, 3, 16, 127, 128, 129, 300] {
            let items: Vec<Vec<u8>> = (0..len)
                // Real receipts are long (a 256-byte bloom), so every trie node is hashed.
                .map(|i| format!("receipt {i} of {len} {}", "x".repeat(64)).into_bytes())
                .collect();
            let root = alloy_trie::root::ordered_trie_root_with_encoder(&items, |b, out| {
                out.extend_from_slice(b)
            });
            for i in [0, 1, len / 2, len - 1, 127, 128]
                .into_iter()
                .filter(|i| *i < len)
            {
                let proof = crate::receipt_proof(&items, i);
                let key = Nibbles::unpack(alloy_rlp::encode_fixed_size(&i));
                alloy_trie::proof::verify_proof(root, key, Some(items[i].clone()), &proof)
                    .unwrap_or_else(|e| panic!("{len} items, index {i}: {e}"));
                let other = (i + 1) % len;
                if other != i {
                    let key = Nibbles::unpack(alloy_rlp::encode_fixed_size(&i));
                    assert!(
                        alloy_trie::proof::verify_proof(
                            root,
                            key,
                            Some(items[other].clone()),
                            &proof
                        )
                        .is_err(),
                        "{len} items: item {other} passed as item {i}"
                    );
                }
            }
        }
        assert!(crate::receipt_proof(&[b"x".to_vec()], 1).is_empty());
    }

    #[test]
    fn garbage_is_a_document_error_not_a_panic() {
        for text in ["", "{}", "[]", "null", "{\"version\": 1}", "\u{0}"] {
            let e = Provenance::from_json(text).expect_err(text);
            assert_eq!(e.link, Link::Document, "{text}: {e}");
        }
    }

    /// A document with only what [`check_certificate`] reads filled in.
    fn set_doc(validators: Vec<Address>, header: &L2Header, cert: Option<Vec<u8>>) -> Provenance {
        let inclusion = crate::BitcoinInclusion {
            tx: Vec::new(),
            merkle_block: Vec::new(),
            headers: Vec::new(),
        };
        Provenance {
            version: crate::VERSION_SET.into(),
            network: "regtest".into(),
            chain_id: 7,
            sequencer: header.beneficiary,
            validators,
            tunnel_manager: Address::ZERO,
            deposit: crate::Deposit {
                txid: String::new(),
                vout: 0,
                vault_script: Vec::new(),
                inclusion: inclusion.clone(),
            },
            mint: crate::Mint {
                header: alloy_rlp::encode(header).into(),
                seal: alloy_primitives::Bytes::from(vec![0u8; 65]),
                certificate: cert.map(Into::into),
                receipt_index: 0,
                receipt: Default::default(),
                receipt_proof: Vec::new(),
                log_index: 0,
                headers: Vec::new(),
            },
            anchor: crate::Anchor {
                keystone: Vec::new(),
                pop_txid: String::new(),
                inclusion,
            },
        }
    }

    #[test]
    fn a_sets_mint_block_needs_its_proposer_in_the_set_and_a_quorum_certificate() {
        use hemi_chain::certificate::{recover_digest, sign_digest, vote_digest, VoteKind};
        let key = |i: u8| B256::repeat_byte(i);
        let addr = |i: u8| {
            let d = vote_digest(1, VoteKind::Prevote, 0, 0, None);
            recover_digest(d, &sign_digest(key(i), d).expect("sign")).expect("recover")
        };
        let set: Vec<Address> = (1..=4).map(addr).collect();
        let header = L2Header {
            number: 9,
            beneficiary: addr(2),
            ..Default::default()
        };
        let hash = keccak256(alloy_rlp::encode(&header));
        let cert = |signers: &[u8]| {
            let d = vote_digest(7, VoteKind::Precommit, 9, 1, Some(hash));
            hemi_chain::Certificate {
                round: 1,
                signatures: signers
                    .iter()
                    .map(|&i| sign_digest(key(i), d).expect("sign"))
                    .collect(),
            }
            .encode()
        };
        let opts = VerifyOptions::default();
        let check = |doc: &Provenance, opts: &VerifyOptions| {
            doc.check_version()?;
            check_certificate(doc, opts, &header, hash)
        };

        let doc = set_doc(set.clone(), &header, Some(cert(&[1, 3, 4])));
        let (proposer, signers) = check(&doc, &opts).expect("3 of 4");
        assert_eq!(proposer, addr(2));
        assert_eq!(signers, vec![addr(1), addr(3), addr(4)]);
        // The same document against the set the verifier trusts.
        let trusted = VerifyOptions {
            validators: Some(set.clone()),
            ..VerifyOptions::default()
        };
        check(&doc, &trusted).expect("the same set");

        let short = set_doc(set.clone(), &header, Some(cert(&[1, 3])));
        let e = check(&short, &opts).expect_err("2 of 4");
        assert!(e.to_string().contains("it needs 3"), "{e}");
        let other_set = VerifyOptions {
            validators: Some((5..=8).map(addr).collect()),
            ..VerifyOptions::default()
        };
        let e = check(&doc, &other_set).expect_err("another set");
        assert!(e.to_string().contains("not one of the 4 validators"), "{e}");
        let mut outsider = set.clone();
        outsider[1] = addr(9);
        let e = check(&set_doc(outsider, &header, Some(cert(&[1, 3, 4]))), &opts)
            .expect_err("the proposer outside the set");
        assert!(e.to_string().contains("not one of the 4 validators"), "{e}");
        let mut named = doc.clone();
        named.sequencer = addr(1);
        let e = check(&named, &opts).expect_err("another sequencer named");
        assert!(e.to_string().contains("not the sequencer"), "{e}");

        // The version says which shape the document has.
        let mut v1 = doc.clone();
        v1.version = crate::VERSION.into();
        assert_eq!(
            check(&v1, &opts).expect_err("v1 with a set").link,
            Link::Document
        );
        let mut no_cert = doc.clone();
        no_cert.mint.certificate = None;
        assert_eq!(
            no_cert.check_version().expect_err("v2 without").link,
            Link::Document
        );
        no_cert.version = crate::VERSION.into();
        no_cert.validators.clear();
        no_cert.check_version().expect("a v1 document");
        let e = check_certificate(&no_cert, &trusted, &header, hash).expect_err("no certificate");
        assert!(
            e.to_string().contains("carries no commit certificate"),
            "{e}"
        );
        // The JSON round trip keeps the set's fields, and v1 documents gain none.
        let back = Provenance::from_json(&doc.to_json()).expect("round trip");
        assert_eq!(back, doc);
        assert!(!no_cert.to_json().contains("validators"));
    }
}
