//! Stateless sanity checks on decoded messages.

use bitcoin::p2p::message::NetworkMessage;

/// Most entries in one `inv`, `getdata` or `notfound` (Bitcoin Core's `MAX_INV_SZ`).
pub const MAX_INV_ENTRIES: usize = 50_000;
/// Most headers in one `headers` message (Bitcoin Core's `MAX_HEADERS_RESULTS`).
pub const MAX_HEADERS_ENTRIES: usize = 2_000;
/// Most addresses in one `addr` or `addrv2` message (Bitcoin Core's `MAX_ADDR_TO_SEND`).
pub const MAX_ADDR_ENTRIES: usize = 1_000;
/// Most hashes in a `getheaders`/`getblocks` locator (Bitcoin Core's `MAX_LOCATOR_SZ`).
pub const MAX_LOCATOR_ENTRIES: usize = 101;

/// Checks a decoded message for things no honest peer sends, whatever the connection's state.
///
/// Flags: empty `inv`/`getdata` (Hemi's remote crash #1039 came from an empty `inv`; Bitcoin Core
/// never sends one), `inv`/`getdata`/`notfound` over [`MAX_INV_ENTRIES`], `headers` over
/// [`MAX_HEADERS_ENTRIES`] or whose headers do not each build on the previous one, `addr`/`addrv2`
/// over [`MAX_ADDR_ENTRIES`], locators over [`MAX_LOCATOR_ENTRIES`]. An empty `headers` is fine
/// (it is how a peer says "nothing newer").
///
/// # Errors
///
/// The reason the message is misbehaviour, for [`crate::BanList::misbehaving`] or
/// [`crate::PeerError::Misbehaving`].
pub fn check_message(msg: &NetworkMessage) -> Result<(), String> {
    match msg {
        NetworkMessage::Inv(items) | NetworkMessage::GetData(items) if items.is_empty() => {
            Err(format!("empty {} message", msg.cmd()))
        }
        NetworkMessage::Inv(items)
        | NetworkMessage::GetData(items)
        | NetworkMessage::NotFound(items)
            if items.len() > MAX_INV_ENTRIES =>
        {
            Err(format!(
                "{} message with {} entries (max {MAX_INV_ENTRIES})",
                msg.cmd(),
                items.len()
            ))
        }
        NetworkMessage::Headers(headers) => {
            if headers.len() > MAX_HEADERS_ENTRIES {
                return Err(format!(
                    "headers message with {} headers (max {MAX_HEADERS_ENTRIES})",
                    headers.len()
                ));
            }
            for (i, pair) in headers.windows(2).enumerate() {
                if let [prev, next] = pair {
                    if next.prev_blockhash != prev.block_hash() {
                        return Err(format!(
                            "headers message not connected: header {} does not build on header {i}",
                            i + 1
                        ));
                    }
                }
            }
            Ok(())
        }
        NetworkMessage::Addr(addrs) if addrs.len() > MAX_ADDR_ENTRIES => Err(format!(
            "addr message with {} addresses (max {MAX_ADDR_ENTRIES})",
            addrs.len()
        )),
        NetworkMessage::AddrV2(addrs) if addrs.len() > MAX_ADDR_ENTRIES => Err(format!(
            "addrv2 message with {} addresses (max {MAX_ADDR_ENTRIES})",
            addrs.len()
        )),
        NetworkMessage::GetHeaders(m) if m.locator_hashes.len() > MAX_LOCATOR_ENTRIES => {
            Err(format!(
                "getheaders locator with {} hashes (max {MAX_LOCATOR_ENTRIES})",
                m.locator_hashes.len()
            ))
        }
        NetworkMessage::GetBlocks(m) if m.locator_hashes.len() > MAX_LOCATOR_ENTRIES => {
            Err(format!(
                "getblocks locator with {} hashes (max {MAX_LOCATOR_ENTRIES})",
                m.locator_hashes.len()
            ))
        }
        _ => Ok(()),
    }
}
