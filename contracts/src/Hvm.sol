// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title Hvm
/// @notice Typed access to the hVM Bitcoin precompiles at 0x40-0x49.
/// @dev Byte formats follow docs/HVM_PRECOMPILES.md (Hemi op-geth encodings). Inputs and outputs
/// are packed, not ABI-encoded; integers are big-endian. Every txid and block hash, in and out, is
/// in Bitcoin display order: a `bytes32` literal written as the explorer/RPC hex is the right value.
///
/// A precompile answers in one of three ways:
/// - data: decoded here;
/// - empty success (not found, undecodable address, bad length, internal fault): reverts
///   `HvmNoResult`, except in the `try*` functions, which return `found = false`;
/// - failed call (0x43 unknown txid, 0x44 header lookup failure, 0x46 invalid address, out of
///   gas): reverts `HvmCallFailed`. Such a failure consumes all gas forwarded to the precompile.
library Hvm {
    address internal constant BTC_BAL_ADDR = address(0x40);
    address internal constant BTC_UTXOS_ADDR_LIST = address(0x41);
    address internal constant BTC_TX_BY_TXID = address(0x42);
    address internal constant BTC_TX_CONFIRMATIONS = address(0x43);
    address internal constant BTC_LAST_HEADER = address(0x44);
    address internal constant BTC_HEADER_N = address(0x45);
    address internal constant BTC_ADDR_TO_SCRIPT = address(0x46);
    address internal constant BTC_INPUT_BY_TXID = address(0x47);
    address internal constant BTC_OUTPUT_BY_TXID = address(0x48);
    address internal constant BTC_TX_GET_INPUT_WITNESS = address(0x49);

    /// @notice Length of the header record returned by 0x44 and 0x45.
    uint256 internal constant HEADER_RECORD_LENGTH = 116;

    // btcTxByTxid (0x42) flag bits, as `bytes4(bf1 bf2 bf3 bf4)` masks; OR them together.
    /// @notice bf1 bit 6: containing block hash; also adds a per-input u16 witness count when inputs are on.
    bytes4 internal constant TX_BLOCK_HASH = 0x40000000;
    /// @notice bf1 bit 5: u32 tx version.
    bytes4 internal constant TX_VERSION = 0x20000000;
    /// @notice bf1 bit 4: u32 serialized size with witness, then u32 stripped size.
    bytes4 internal constant TX_SIZES = 0x10000000;
    /// @notice bf1 bit 3: u32 locktime.
    bytes4 internal constant TX_LOCKTIME = 0x08000000;
    /// @notice bf1 bit 2: u16 input count, then per input u64 spent value (and the parts below).
    bytes4 internal constant TX_INPUTS = 0x04000000;
    /// @notice bf1 bit 1: per input prevout txid (display order) and u32 prevout index.
    bytes4 internal constant TX_INPUT_SOURCE = 0x02000000;
    /// @notice bf1 bit 0: per input u16 full scriptSig length, then scriptSig chopped to the bf4 limit.
    bytes4 internal constant TX_INPUT_SCRIPTSIG = 0x01000000;
    /// @notice bf2 bit 7: per input u32 sequence.
    bytes4 internal constant TX_INPUT_SEQUENCE = 0x00800000;
    /// @notice bf2 bit 5: u16 output count, then per output u64 value (and the parts below).
    bytes4 internal constant TX_OUTPUTS = 0x00200000;
    /// @notice bf2 bit 4: per output u16 full pkScript length, then pkScript chopped to the bf4 limit.
    bytes4 internal constant TX_OUTPUT_SCRIPT = 0x00100000;
    /// @notice bf2 bit 3: also list unspendable (e.g. OP_RETURN) outputs.
    bytes4 internal constant TX_UNSPENDABLE_OUTPUTS = 0x00080000;
    /// @notice bf2 bit 2: per output 1 byte, 1 = still unspent.
    bytes4 internal constant TX_OUTPUT_SPENT = 0x00040000;

    /// @notice One UTXO from btcUtxosAddrList (0x41).
    struct Utxo {
        bytes32 txid;
        uint16 vout;
        uint64 value;
    }

    /// @notice Decoded 116-byte header record of 0x44 / 0x45.
    struct Header {
        uint32 height;
        bytes32 hash;
        uint32 version;
        bytes32 prevHash;
        bytes32 merkleRoot;
        uint32 time;
        uint32 bits;
        uint32 nonce;
    }

    /// @notice Fixed-size fields of a transaction from btcTxByTxid (0x42) with flags 0x78000000.
    struct TxInfo {
        bytes32 blockHash;
        uint32 version;
        uint32 size;
        uint32 strippedSize;
        uint32 lockTime;
    }

    /// @notice One input from btcInputByTxid (0x47).
    struct Input {
        uint16 witnessItemCount;
        uint64 value;
        bytes32 prevTxid;
        uint16 prevIndex;
        uint16 scriptSigLength;
        bytes scriptSig;
        uint32 sequence;
    }

    /// @notice One output from btcOutputByTxid (0x48).
    struct Output {
        uint64 value;
        uint16 scriptLength;
        bytes script;
        bool unspent;
    }

    /// @notice The staticcall to `precompile` failed (raw error or out of gas).
    error HvmCallFailed(address precompile);
    /// @notice `precompile` returned empty data: nothing found, invalid input, or no hVM on this chain.
    error HvmNoResult(address precompile);
    /// @notice `precompile` returned `length` bytes, which do not match its documented layout.
    error HvmMalformedResult(address precompile, uint256 length);

    /// @notice Calls `precompile` with `input`; reverts `HvmCallFailed` if the call fails.
    /// @return out The raw returndata, possibly empty.
    function call(address precompile, bytes memory input) internal view returns (bytes memory out) {
        bool ok;
        (ok, out) = precompile.staticcall(input);
        if (!ok) revert HvmCallFailed(precompile);
    }

    /// @notice Like `call`, but reverts `HvmNoResult` on empty returndata.
    function callNonEmpty(address precompile, bytes memory input) internal view returns (bytes memory out) {
        out = call(precompile, input);
        if (out.length == 0) revert HvmNoResult(precompile);
    }

    /// @notice 0x40 btcBalAddr: total value of the address's indexed UTXOs.
    /// @param btcAddress Bitcoin address, at least 24 characters (shorter ones give no result).
    /// @return sats Balance in satoshis; 0 for an address that never received funds.
    function balance(string memory btcAddress) internal view returns (uint256 sats) {
        bytes memory out = callNonEmpty(BTC_BAL_ADDR, bytes(btcAddress));
        if (out.length != 8) revert HvmMalformedResult(BTC_BAL_ADDR, out.length);
        return _uint(out, 0, 8);
    }

    /// @notice 0x41 btcUtxosAddrList: a page of the address's UTXOs.
    /// @param start Number of UTXOs to skip (an offset, not a page number).
    /// @param count Page size, 1-255; 0 means 10.
    /// @return list Ordered by internal-order txid bytes, then vout. The txids are in display order.
    ///   vout is the low 16 bits of the real output index.
    function utxos(string memory btcAddress, uint24 start, uint8 count) internal view returns (Utxo[] memory list) {
        bytes memory out = callNonEmpty(BTC_UTXOS_ADDR_LIST, abi.encodePacked(btcAddress, start, count));
        uint256 n = uint8(out[0]);
        if (out.length != 1 + n * 42) revert HvmMalformedResult(BTC_UTXOS_ADDR_LIST, out.length);
        list = new Utxo[](n);
        for (uint256 i = 0; i < n; i++) {
            uint256 at = 1 + i * 42;
            list[i] = Utxo(bytes32(_uint(out, at, 32)), uint16(_uint(out, at + 32, 2)), uint64(_uint(out, at + 34, 8)));
        }
    }

    /// @notice 0x42 btcTxByTxid: packed, flag-selected transaction fields.
    /// @dev `flags` is bf1..bf4 (OR the TX_* constants, plus bf3 = inputs exponent << 3 | outputs exponent,
    /// capping inputs/outputs at 1 << e; bf4 = scriptSig exponent << 2 | pkScript exponent, capping
    /// scripts at 1 << (4 + e) bytes). Output, each part only if its flag is set, in this order:
    /// blockHash[32] | u32 version | u32 size, u32 strippedSize | u32 lockTime |
    /// u16 inputCount, per input (up to the cap): [u16 witnessCount if TX_BLOCK_HASH] u64 value
    /// [prevTxid[32] u32 prevIndex] [u16 sigLen, scriptSig] [u32 sequence] |
    /// u16 outputCount, per output (up to the cap): u64 value [u16 scriptLen, script] [u8 unspent].
    /// Empty data (not found, or a coinbase with TX_INPUTS) is returned as empty bytes, not reverted.
    function txByTxid(bytes32 txid, bytes4 flags) internal view returns (bytes memory) {
        return call(BTC_TX_BY_TXID, abi.encodePacked(txid, flags));
    }

    /// @notice 0x42 with flags TX_BLOCK_HASH | TX_VERSION | TX_SIZES | TX_LOCKTIME, decoded.
    function txInfo(bytes32 txid) internal view returns (TxInfo memory info) {
        bytes memory out = callNonEmpty(BTC_TX_BY_TXID, abi.encodePacked(txid, TX_BLOCK_HASH | TX_VERSION | TX_SIZES | TX_LOCKTIME));
        if (out.length != 48) revert HvmMalformedResult(BTC_TX_BY_TXID, out.length);
        info.blockHash = bytes32(_uint(out, 0, 32));
        info.version = uint32(_uint(out, 32, 4));
        info.size = uint32(_uint(out, 36, 4));
        info.strippedSize = uint32(_uint(out, 40, 4));
        info.lockTime = uint32(_uint(out, 44, 4));
    }

    /// @notice 0x43 btcTxConfirmations: consensus Bitcoin tip height - tx block height + 1.
    /// @dev An unindexed txid makes the precompile fail (HvmCallFailed) and burns all forwarded gas.
    /// A tx above the tip yields a wrapped value (e.g. 0xFFFFFFFF), as the precompile computes it.
    function txConfirmations(bytes32 txid) internal view returns (uint32) {
        bytes memory out = callNonEmpty(BTC_TX_CONFIRMATIONS, abi.encodePacked(txid));
        if (out.length != 4) revert HvmMalformedResult(BTC_TX_CONFIRMATIONS, out.length);
        return uint32(_uint(out, 0, 4));
    }

    /// @notice 0x44 btcLastHeader: the header the hVM's Bitcoin index currently sits at.
    /// @dev That is normally the consensus Bitcoin tip minus 2, not the best known header.
    function lastHeader() internal view returns (Header memory) {
        return decodeHeader(BTC_LAST_HEADER, callNonEmpty(BTC_LAST_HEADER, ""));
    }

    /// @notice 0x45 btcHeaderN: the indexed header at `height`. Reverts `HvmNoResult` if none.
    /// @dev The pinned Hemi op-geth build returns nothing for every height; prefer `tryHeaderN`.
    function headerN(uint32 height) internal view returns (Header memory) {
        return decodeHeader(BTC_HEADER_N, callNonEmpty(BTC_HEADER_N, abi.encodePacked(height)));
    }

    /// @notice 0x45 btcHeaderN without reverting on an empty result.
    function tryHeaderN(uint32 height) internal view returns (bool found, Header memory header) {
        bytes memory out = call(BTC_HEADER_N, abi.encodePacked(height));
        if (out.length == 0) return (false, header);
        return (true, decodeHeader(BTC_HEADER_N, out));
    }

    /// @notice 0x46 btcAddrToScript: the scriptPubKey paying to `btcAddress` on the hVM's Bitcoin network.
    /// @dev An address that does not decode makes the precompile fail (HvmCallFailed), burning forwarded gas.
    function addrToScript(string memory btcAddress) internal view returns (bytes memory) {
        return callNonEmpty(BTC_ADDR_TO_SCRIPT, bytes(btcAddress));
    }

    /// @notice 0x47 btcInputByTxid: input `vin` of `txid`, its scriptSig cut to `maxSigLen` bytes.
    /// @dev prevIndex is clamped to 65535. scriptSigLength is the full length.
    function inputByTxid(bytes32 txid, uint16 vin, uint16 maxSigLen) internal view returns (Input memory input) {
        bytes memory out = callNonEmpty(BTC_INPUT_BY_TXID, abi.encodePacked(txid, vin, maxSigLen));
        if (out.length < 50) revert HvmMalformedResult(BTC_INPUT_BY_TXID, out.length);
        input.witnessItemCount = uint16(_uint(out, 0, 2));
        input.value = uint64(_uint(out, 2, 8));
        input.prevTxid = bytes32(_uint(out, 10, 32));
        input.prevIndex = uint16(_uint(out, 42, 2));
        input.scriptSigLength = uint16(_uint(out, 44, 2));
        uint256 sigLen = out.length - 50;
        if (sigLen != _min(input.scriptSigLength, maxSigLen)) revert HvmMalformedResult(BTC_INPUT_BY_TXID, out.length);
        input.scriptSig = _slice(out, 46, sigLen);
        input.sequence = uint32(_uint(out, 46 + sigLen, 4));
    }

    /// @notice 0x48 btcOutputByTxid: output `vout` of `txid`, its pkScript cut to `maxScriptLen` bytes.
    /// @dev The precompile returns nothing for a spent output, so `unspent` is in practice always true.
    function outputByTxid(bytes32 txid, uint16 vout, uint16 maxScriptLen) internal view returns (Output memory output) {
        bytes memory out = callNonEmpty(BTC_OUTPUT_BY_TXID, abi.encodePacked(txid, vout, maxScriptLen));
        if (out.length < 11) revert HvmMalformedResult(BTC_OUTPUT_BY_TXID, out.length);
        output.value = uint64(_uint(out, 0, 8));
        output.scriptLength = uint16(_uint(out, 8, 2));
        uint256 scriptLen = out.length - 11;
        if (scriptLen != _min(output.scriptLength, maxScriptLen)) revert HvmMalformedResult(BTC_OUTPUT_BY_TXID, out.length);
        output.script = _slice(out, 10, scriptLen);
        output.unspent = out[out.length - 1] != 0;
    }

    /// @notice 0x49 btcTxGetInputWitness: witness item `witnessIndex` of input `vin`, cut to `maxLen` bytes.
    /// @return fullLength The item's full length (clamped to 65535).
    /// @return item The first min(fullLength, maxLen) bytes.
    function txInputWitness(bytes32 txid, uint16 vin, uint16 witnessIndex, uint16 maxLen)
        internal
        view
        returns (uint16 fullLength, bytes memory item)
    {
        bytes memory out = callNonEmpty(BTC_TX_GET_INPUT_WITNESS, abi.encodePacked(txid, vin, witnessIndex, maxLen));
        if (out.length < 2) revert HvmMalformedResult(BTC_TX_GET_INPUT_WITNESS, out.length);
        fullLength = uint16(_uint(out, 0, 2));
        if (out.length - 2 != _min(fullLength, maxLen)) revert HvmMalformedResult(BTC_TX_GET_INPUT_WITNESS, out.length);
        item = _slice(out, 2, out.length - 2);
    }

    /// @notice Decodes a 116-byte header record returned by `precompile`.
    function decodeHeader(address precompile, bytes memory out) internal pure returns (Header memory h) {
        if (out.length != HEADER_RECORD_LENGTH) revert HvmMalformedResult(precompile, out.length);
        h.height = uint32(_uint(out, 0, 4));
        h.hash = bytes32(_uint(out, 4, 32));
        h.version = uint32(_uint(out, 36, 4));
        h.prevHash = bytes32(_uint(out, 40, 32));
        h.merkleRoot = bytes32(_uint(out, 72, 32));
        h.time = uint32(_uint(out, 104, 4));
        h.bits = uint32(_uint(out, 108, 4));
        h.nonce = uint32(_uint(out, 112, 4));
    }

    function _min(uint256 a, uint256 b) private pure returns (uint256) {
        return a < b ? a : b;
    }

    /// @dev Big-endian unsigned integer of `size` (1-32) bytes at `offset`; the caller checks bounds.
    function _uint(bytes memory b, uint256 offset, uint256 size) private pure returns (uint256 v) {
        assembly ("memory-safe") {
            v := shr(mul(sub(32, size), 8), mload(add(add(b, 32), offset)))
        }
    }

    function _slice(bytes memory b, uint256 offset, uint256 size) private pure returns (bytes memory r) {
        r = new bytes(size);
        assembly ("memory-safe") {
            mcopy(add(r, 32), add(add(b, 32), offset), size)
        }
    }
}
