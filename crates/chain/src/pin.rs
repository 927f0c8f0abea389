//! Choosing and checking the Bitcoin block an L2 block pins.

use crate::{BlockError, Chain, ChainError};
use bitcoin::block::Header;
use bitcoin::hashes::Hash;
use hemi_btc_view::{BitcoinView, BlockRef};
use hemi_hvm::attributes::MAX_HEADERS_PER_BLOCK;
use hemi_hvm::{BitcoinPin, BtcAttributes};

fn view_err(e: hemi_btc_view::ViewError) -> ChainError {
    ChainError::BitcoinNotReady(e.to_string())
}

/// The attributes for the block after one pinned to `parent_pin`: the headers of the best chain
/// after the parent's pin (after the fork point if Bitcoin reorganised), at most six, and the
/// newest of them as the canonical tip. Returns the attributes and the block they pin.
///
/// # Errors
/// The Bitcoin view failed.
pub fn next_attributes(
    view: &dyn BitcoinView,
    parent_pin: Option<BlockRef>,
) -> Result<(BtcAttributes, BlockRef), ChainError> {
    let tip = view.tip().map_err(view_err)?;
    // Walk the parent's pin back to the best chain (it is there unless Bitcoin reorganised).
    let mut base = parent_pin.filter(|p| p.hash != bitcoin::BlockHash::all_zeros());
    while let Some(b) = base {
        match view.header_at(b.height).map_err(view_err)? {
            Some((r, _)) if r.hash == b.hash => break,
            _ => {}
        }
        base = match view.header_by_hash(&b.hash).map_err(view_err)? {
            Some((_, h)) if b.height > 0 => view
                .header_by_hash(&h.prev_blockhash)
                .map_err(view_err)?
                .map(|(r, _)| r),
            _ => None,
        };
    }
    let Some(base) = base else {
        // First block (or a pin we no longer know): pin the tip without headers.
        return Ok((
            BtcAttributes {
                canonical_tip: tip.hash,
                headers: vec![],
            },
            tip,
        ));
    };
    let mut headers: Vec<Header> = Vec::new();
    let mut pinned = base;
    let last = tip.height.min(base.height + MAX_HEADERS_PER_BLOCK as u32);
    for height in base.height + 1..=last {
        match view.header_at(height).map_err(view_err)? {
            Some((r, h)) => {
                headers.push(h);
                pinned = r;
            }
            None => break,
        }
    }
    Ok((
        BtcAttributes {
            canonical_tip: pinned.hash,
            headers,
        },
        pinned,
    ))
}

/// Resolves the Bitcoin block an imported block's attributes pin, in our own Bitcoin view.
///
/// # Errors
/// [`ChainError::BitcoinNotReady`] if our client does not have that block on its best chain
/// (yet); [`ChainError::InvalidBlock`] if the carried headers do not end at the pinned tip.
pub fn resolve_pin(
    view: std::sync::Arc<dyn BitcoinView>,
    network: bitcoin::Network,
    attrs: &BtcAttributes,
) -> Result<BitcoinPin, ChainError> {
    if let Some(last) = attrs.headers.last() {
        if last.block_hash() != attrs.canonical_tip {
            return Err(BlockError::AttributesTip {
                last: last.block_hash(),
                tip: attrs.canonical_tip,
            }
            .into());
        }
    }
    for w in attrs.headers.windows(2) {
        if w[1].prev_blockhash != w[0].block_hash() {
            return Err(BlockError::AttributesUnchained.into());
        }
    }
    let (pinned, _) = view
        .header_by_hash(&attrs.canonical_tip)
        .map_err(view_err)?
        .ok_or_else(|| {
            ChainError::BitcoinNotReady(format!(
                "Bitcoin block {} not known yet",
                attrs.canonical_tip
            ))
        })?;
    match view.header_at(pinned.height).map_err(view_err)? {
        Some((r, _)) if r.hash == pinned.hash => {}
        _ => {
            return Err(ChainError::BitcoinNotReady(format!(
                "Bitcoin block {} is not on our best chain",
                attrs.canonical_tip
            )))
        }
    }
    if view.tip().map_err(view_err)?.height < pinned.height {
        return Err(ChainError::BitcoinNotReady("Bitcoin still syncing".into()));
    }
    Ok(BitcoinPin {
        view,
        pinned,
        network,
    })
}

/// The Bitcoin view as pinned by block `number` (calls on that block's state see it).
///
/// # Errors
/// Unknown block.
pub fn pin_for(
    chain: &Chain,
    bitcoin: &std::sync::Arc<dyn BitcoinView>,
    network: bitcoin::Network,
    number: u64,
) -> Result<BitcoinPin, ChainError> {
    let pinned = match chain.pin(number)? {
        Some(p) if number > 0 => p,
        _ => bitcoin
            .tip()
            .map_err(|e| ChainError::BitcoinNotReady(e.to_string()))?,
    };
    Ok(BitcoinPin {
        view: bitcoin.clone(),
        pinned,
        network,
    })
}
