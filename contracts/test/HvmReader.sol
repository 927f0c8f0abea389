// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Hvm} from "../src/Hvm.sol";

/// @title HvmReader
/// @notice Exposes the Hvm library through eth_call and through a state-changing transaction.
contract HvmReader {
    uint32 public recordedHeight;
    bytes32 public recordedHash;

    event LastHeaderRecorded(uint32 height, bytes32 hash);

    function btcBalance(string calldata btcAddress) external view returns (uint256) {
        return Hvm.balance(btcAddress);
    }

    function txConfirmations(bytes32 txid) external view returns (uint32) {
        return Hvm.txConfirmations(txid);
    }

    function addrToScript(string calldata btcAddress) external view returns (bytes memory) {
        return Hvm.addrToScript(btcAddress);
    }

    function lastHeader()
        external
        view
        returns (
            uint32 height,
            bytes32 hash,
            uint32 version,
            bytes32 prevHash,
            bytes32 merkleRoot,
            uint32 time,
            uint32 bits,
            uint32 nonce
        )
    {
        Hvm.Header memory h = Hvm.lastHeader();
        return (h.height, h.hash, h.version, h.prevHash, h.merkleRoot, h.time, h.bits, h.nonce);
    }

    function btcUtxos(string calldata btcAddress, uint24 start, uint8 count) external view returns (Hvm.Utxo[] memory) {
        return Hvm.utxos(btcAddress, start, count);
    }

    function txInfo(bytes32 txid) external view returns (Hvm.TxInfo memory) {
        return Hvm.txInfo(txid);
    }

    function txByTxid(bytes32 txid, bytes4 flags) external view returns (bytes memory) {
        return Hvm.txByTxid(txid, flags);
    }

    function headerN(uint32 height) external view returns (bool found, Hvm.Header memory header) {
        return Hvm.tryHeaderN(height);
    }

    function inputByTxid(bytes32 txid, uint16 vin, uint16 maxSigLen) external view returns (Hvm.Input memory) {
        return Hvm.inputByTxid(txid, vin, maxSigLen);
    }

    function outputByTxid(bytes32 txid, uint16 vout, uint16 maxScriptLen) external view returns (Hvm.Output memory) {
        return Hvm.outputByTxid(txid, vout, maxScriptLen);
    }

    function txInputWitness(bytes32 txid, uint16 vin, uint16 witnessIndex, uint16 maxLen)
        external
        view
        returns (uint16 fullLength, bytes memory item)
    {
        return Hvm.txInputWitness(txid, vin, witnessIndex, maxLen);
    }

    /// @notice Stores and emits the last Bitcoin header seen by the hVM when this transaction executes.
    function recordLastHeader() external returns (uint32 height, bytes32 hash) {
        Hvm.Header memory h = Hvm.lastHeader();
        recordedHeight = h.height;
        recordedHash = h.hash;
        emit LastHeaderRecorded(h.height, h.hash);
        return (h.height, h.hash);
    }
}
