// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {HemiBTC} from "./HemiBTC.sol";

/// @title TunnelManager
/// @notice Mints hemiBTC for BTC locked in the tunnel's vault, once per deposit outpoint, after
/// checking the deposit only through the hVM's Bitcoin precompiles (0x42 transaction by txid,
/// 0x43 confirmations), as of the Bitcoin block the L2 block pinned. Anyone may call
/// `confirmDeposit`; the sequencer calls it for every eligible deposit at the start of a block.
/// @dev Installed by the chain at the tunnel's activation block, without a constructor. Storage
/// layout (the chain writes slots 0-3; hemi-tunnel's `contracts` module mirrors it):
///   slot 0 vaultKey: the x-only output key of the vault's taproot output (OP_1 <key>);
///   slot 1 depositFee, slot 2 minDeposit (satoshis); slot 3 depositConfirmations;
///   slot 4 mintedIn: keccak256(txid ‖ vout) → the L2 block that minted it (0: not minted);
///   slot 5 withdrawalDeadline (L2 blocks; the chain writes it); slot 6 withdrawalCount;
///   slot 7 withdrawals; slot 8 payoutProcessed: txid → true; slot 9 faulty;
///   slot 10 frozenAt: the L2 block whose `reportInvalidSpend` froze new deposits (0: not);
///   slot 11 strayOutputs: payout txid → its outputs that pay neither a listed request nor the
///   vault.
/// Withdrawals: `initiateWithdrawal` burns hemiBTC and records a request; the custodians pay
/// requests in batches — one Bitcoin transaction paying many requests, in the order its
/// `OP_RETURN OP_PUSHDATA1 <len> "HEMW" ‖ u32 ids…` outputs list them, change to the vault —
/// and `finalizeWithdrawal(txid)` (anyone; the sequencer does it for the custodians) checks the
/// payout through the hVM and marks each request it pays. A request still unpaid
/// `withdrawalDeadline` blocks after it was made can be challenged: its hemiBTC is minted back
/// to the requester and the vault is marked faulty. Any confirmed spend of a vault output that
/// is not a payout (no id list), or a finalized payout with an output that pays neither a
/// request it lists nor the vault, can be reported by anyone (`reportInvalidSpend`): new
/// deposits are then refused (the vault is frozen).
/// A deposit is Hemi's format: exactly one output pays the vault, exactly one OP_RETURN names the
/// recipient as `6a 14 <20 bytes>` or `6a 28 <40 ASCII hex digits>` (the push opcode must say
/// the length it carries; Hemi's contract does not check it), at most 128 outputs.
/// Or it is a taproot deposit with a refund path: output `vout` is a P2TR output whose key is
/// the NUMS point tweaked (BIP-341) by a tree of two leaves,
///   deposit: `<version ‖ chain id ‖ recipient ‖ max fee> OP_DROP <vaultKey> OP_CHECKSIG`,
///   reclaim: `<N> OP_CHECKSEQUENCEVERIFY OP_DROP <depositor key> OP_CHECKSIG`,
/// and the transaction's one OP_RETURN is the hint `6a 4b "HEMT" ‖ version ‖ chain id ‖
/// recipient ‖ max fee ‖ depositor key ‖ N` that rebuilds them. The contract rebuilds both
/// leaves, their TapLeaf/TapBranch/TapTweak hashes (sha256 precompile) and the tweaked key
/// (NUMS + t·G through ecrecover, the y coordinate of the output key through modexp), and mints
/// only if it is the output's key, the chain id is this chain's, the fee is within the max fee
/// and the reclaim path stays shut for `SWEEP_BLOCKS` more blocks (the custodians' time to
/// sweep the deposit into the vault through its deposit leaf).
contract TunnelManager {
    /// @notice The hemiBTC token.
    HemiBTC public constant TOKEN = HemiBTC(0x4200000000000000000000000000000000000061);
    /// @notice The most outputs a deposit transaction may have (what one 0x42 call returns).
    uint256 public constant MAX_OUTPUTS = 128;
    /// @notice Bitcoin blocks a taproot deposit's reclaim path must stay shut after its mint.
    uint256 public constant SWEEP_BLOCKS = 6;
    /// @notice BIP-341's NUMS point H (x-only, even y), the internal key of a taproot deposit.
    bytes32 public constant NUMS = 0x50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0;
    /// @dev secp256k1's field prime and group order.
    uint256 private constant FIELD_P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F;
    uint256 private constant ORDER_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    /// @notice The tag after OP_RETURN OP_PUSHDATA1 <len> in a payout's id list.
    bytes4 public constant PAYOUT_TAG = "HEMW";
    /// @notice The longest withdrawal script (what a 0x42 call returns of an output in full).
    uint256 public constant MAX_WITHDRAWAL_SCRIPT = 128;

    /// @notice Where a request stands.
    enum Status {
        None,
        Pending,
        Paid,
        Challenged
    }

    /// @notice One withdrawal request.
    struct Withdrawal {
        address requester;
        uint64 amount;
        uint64 maxFee;
        uint64 requestedAt;
        Status status;
        bytes32 payoutTxid;
        bytes script;
    }

    bytes32 public vaultKey;
    uint256 public depositFee;
    uint256 public minDeposit;
    uint256 public depositConfirmations;
    mapping(bytes32 => uint256) public mintedIn;
    uint256 public withdrawalDeadline;
    uint256 public withdrawalCount;
    mapping(uint256 => Withdrawal) internal withdrawals;
    mapping(bytes32 => bool) public payoutProcessed;
    bool public faulty;
    uint256 public frozenAt;
    mapping(bytes32 => uint256) public strayOutputs;
    /// @notice Satoshis a finalized payout gave to miners beyond what its paid requests' fee
    /// shares cover (the vault paid them): reportable like a stray output.
    mapping(bytes32 => uint256) public overpaidFee;

    /// @notice A deposit minted: `gross` satoshis locked, `net` hemiBTC units minted.
    event DepositConfirmed(address indexed recipient, bytes32 indexed txid, uint32 vout, uint64 gross, uint64 net);

    /// @notice A withdrawal request: `amount` hemiBTC burnt, to be paid to `script` less at most
    /// `maxFee` satoshis of Bitcoin fee.
    event WithdrawalRequested(uint256 indexed id, address indexed requester, bytes script, uint64 amount, uint64 maxFee);
    /// @notice Request `id` was paid by output `vout` of Bitcoin transaction `txid`.
    event WithdrawalPaid(uint256 indexed id, bytes32 indexed txid, uint32 vout, uint64 value);
    /// @notice A payout listed request `id` but does not pay it as requested.
    event WithdrawalNotPaid(uint256 indexed id, bytes32 indexed txid, string reason);
    /// @notice Request `id` was challenged after its deadline: its hemiBTC went back.
    event WithdrawalChallenged(uint256 indexed id, address indexed requester, uint64 amount);

    /// @notice A vault spend that pays no request was proved: new deposits are refused.
    event InvalidSpendReported(bytes32 indexed txid, uint16 vin, address reporter, string reason);

    error AlreadyMinted(bytes32 txid, uint32 vout);
    error VaultFrozen(uint256 since);
    error NotAVaultSpend(bytes32 txid, uint16 vin);
    error NotInvalid(bytes32 txid, string reason);
    error BadWithdrawal(string reason);
    error AlreadyProcessed(bytes32 txid);
    error NotAPayout(bytes32 txid);
    error NotPending(uint256 id);
    error DeadlineNotReached(uint256 id, uint256 deadline);
    error UnknownTransaction(bytes32 txid);
    error NotConfirmed(bytes32 txid, uint32 confirmations, uint256 required);
    error TooManyOutputs(uint256 count);
    error NotVaultOutput(bytes32 txid, uint32 vout);
    error MultipleVaultOutputs(uint256 count);
    error NoRecipient();
    error MultipleOpReturns(uint256 count);
    error MalformedOpReturn(uint256 length);
    error PushMismatch(uint8 push, uint256 dataLength);
    error BadHex();
    error ZeroRecipient();
    error BelowMinimum(uint64 amount, uint256 minimum);
    error BadTaprootDeposit(string reason);
    error ReclaimOpensTooSoon(uint16 reclaimAfter, uint256 needed);
    error NotDepositOutput(bytes32 txid, uint32 vout);

    /// @notice Whether output `vout` of Bitcoin transaction `txid` (display order) was minted.
    function isMinted(bytes32 txid, uint32 vout) external view returns (bool) {
        return mintedIn[_key(txid, vout)] != 0;
    }

    /// @notice Mints hemiBTC for the deposit in output `vout` of Bitcoin transaction `txid`
    /// (display order): its amount minus `depositFee`, to the recipient its OP_RETURN (or, for a
    /// taproot deposit, its deposit leaf) names.
    /// @return net The hemiBTC units minted.
    function confirmDeposit(bytes32 txid, uint32 vout) external returns (uint64 net) {
        bytes32 key = _key(txid, vout);
        if (mintedIn[key] != 0) revert AlreadyMinted(txid, vout);
        if (frozenAt != 0) revert VaultFrozen(frozenAt);

        (bool ok, bytes memory out) = address(0x43).staticcall{gas: 50_000}(abi.encodePacked(txid));
        if (!ok || out.length != 4) revert UnknownTransaction(txid);
        uint32 confirmations = uint32(bytes4(_word(out, 0)));
        if (confirmations < depositConfirmations) revert NotConfirmed(txid, confirmations, depositConfirmations);

        // 0x42: outputs (bf2 bit 5) with scripts (bit 4), unspendable ones too (bit 3); up to
        // 128 outputs (bf3 = 7) and 128 script bytes each (bf4 = 3).
        (ok, out) = address(0x42).staticcall{gas: 100_000}(abi.encodePacked(txid, bytes4(0x00380703)));
        if (!ok || out.length < 2) revert UnknownTransaction(txid);
        uint64 gross;
        address recipient;
        (gross, recipient) = _parse(txid, vout, out, confirmations);
        if (gross < minDeposit) revert BelowMinimum(gross, minDeposit);
        net = gross - uint64(depositFee);

        mintedIn[key] = block.number;
        TOKEN.mint(recipient, net);
        emit DepositConfirmed(recipient, txid, vout, gross, net);
    }

    /// @notice Burns `amount` hemiBTC of the caller and asks the custodians to pay it to the
    /// Bitcoin output script `script` (at most 128 bytes; e.g. `0014<20 bytes>` for P2WPKH),
    /// less at most `maxFee` satoshis of Bitcoin fee.
    /// @return id The request's id (from 1).
    function initiateWithdrawal(bytes calldata script, uint64 amount, uint64 maxFee) external returns (uint256 id) {
        if (script.length == 0 || script.length > MAX_WITHDRAWAL_SCRIPT) revert BadWithdrawal("script length");
        if (script[0] == 0x6a) revert BadWithdrawal("an OP_RETURN script cannot be paid");
        if (maxFee >= amount) revert BadWithdrawal("the fee would take it all");
        if (amount - maxFee < 546) revert BadWithdrawal("below the dust limit after the fee");
        TOKEN.burn(msg.sender, amount);
        id = ++withdrawalCount;
        withdrawals[id] = Withdrawal(msg.sender, amount, maxFee, uint64(block.number), Status.Pending, bytes32(0), script);
        emit WithdrawalRequested(id, msg.sender, script, amount, maxFee);
    }

    /// @notice Request `id`: requester, amount, max fee, the block it was made in, status
    /// (1 pending, 2 paid, 3 challenged), the payout txid once paid, and the script.
    function getWithdrawal(uint256 id) external view returns (Withdrawal memory) {
        return withdrawals[id];
    }

    /// @notice Marks the requests Bitcoin transaction `txid` (display order) pays, once it has
    /// `depositConfirmations`. Requests it lists but does not pay as asked are left pending
    /// (event `WithdrawalNotPaid`). Each payout is processed once.
    function finalizeWithdrawal(bytes32 txid) external {
        if (payoutProcessed[txid]) revert AlreadyProcessed(txid);
        (bool ok, bytes memory out) = address(0x43).staticcall{gas: 50_000}(abi.encodePacked(txid));
        if (!ok || out.length != 4) revert UnknownTransaction(txid);
        uint32 confirmations = uint32(bytes4(_word(out, 0)));
        if (confirmations < depositConfirmations) revert NotConfirmed(txid, confirmations, depositConfirmations);
        (ok, out) = address(0x42).staticcall{gas: 100_000}(abi.encodePacked(txid, bytes4(0x00380703)));
        if (!ok || out.length < 2) revert UnknownTransaction(txid);
        uint256 count = uint16(bytes2(_word(out, 0)));
        if (count > MAX_OUTPUTS) revert TooManyOutputs(count);
        (uint256[] memory ids, uint256 idCount) = _payoutIds(txid, out, count);
        if (idCount == 0) revert NotAPayout(txid);
        payoutProcessed[txid] = true;
        Tally memory t = _settle(txid, out, count, ids, idCount);
        uint256 inTotal = _inputTotal(txid);
        if (inTotal > t.outTotal + t.shares) overpaidFee[txid] = inTotal - t.outTotal - t.shares;
    }

    /// @dev What `_settle` adds up over a payout's outputs.
    struct Tally {
        uint256 paid;
        uint256 at;
        /// All outputs' values.
        uint256 outTotal;
        /// What the paid requests' fee shares cover: their amounts less what they received.
        uint256 shares;
    }

    /// @dev Pays the listed requests from the payout's outputs, in order; counts stray outputs.
    function _settle(bytes32 txid, bytes memory out, uint256 count, uint256[] memory ids, uint256 idCount)
        private
        returns (Tally memory t)
    {
        bytes32 vaultHash = keccak256(abi.encodePacked(bytes2(0x5120), vaultKey));
        t.at = 2;
        for (uint256 i = 0; i < count; i++) {
            Out memory o;
            (o.value, o.fullLength, o.script, t.at) = _output(txid, out, t.at);
            t.outTotal += o.value;
            if (o.fullLength == 0 || o.script[0] == 0x6a) continue;
            if (o.fullLength == 34 && keccak256(o.script) == vaultHash) continue;
            if (t.paid >= idCount) {
                strayOutputs[txid]++;
                continue;
            }
            uint256 id = ids[t.paid++];
            uint64 asked = withdrawals[id].amount;
            if (_pay(id, txid, uint32(i), o)) t.shares += asked - o.value;
            else strayOutputs[txid]++;
        }
        for (; t.paid < idCount; t.paid++) emit WithdrawalNotPaid(ids[t.paid], txid, "no output pays it");
    }

    /// @dev The sum of the values the inputs of `txid` spend (0x42, inputs only, up to 128;
    /// a transaction with more counts as spending everything: its fee is not provable here).
    function _inputTotal(bytes32 txid) private view returns (uint256 total) {
        (bool ok, bytes memory out) = address(0x42).staticcall{gas: 100_000}(abi.encodePacked(txid, bytes4(0x04003800)));
        if (!ok || out.length < 2) revert UnknownTransaction(txid);
        uint256 count = uint16(bytes2(_word(out, 0)));
        if (count > 128 || out.length < 2 + count * 8) return type(uint128).max;
        for (uint256 i = 0; i < count; i++) total += uint64(bytes8(_word(out, 2 + i * 8)));
    }

    /// @notice Reports input `vin` of Bitcoin transaction `txid` (display order, with
    /// `depositConfirmations`) as a spend of a vault output that pays no request: either the
    /// transaction lists no request ids, or it was finalized and one of its outputs paid neither
    /// a request it lists nor the vault, or its fee was more than the fee shares its paid
    /// requests gave up (the vault paid miners). Freezes new deposits. A payout not yet finalized must be
    /// finalized first (`finalizeWithdrawal`).
    function reportInvalidSpend(bytes32 txid, uint16 vin) external {
        if (frozenAt != 0) revert VaultFrozen(frozenAt);
        (bool ok, bytes memory out) = address(0x43).staticcall{gas: 50_000}(abi.encodePacked(txid));
        if (!ok || out.length != 4) revert UnknownTransaction(txid);
        uint32 confirmations = uint32(bytes4(_word(out, 0)));
        if (confirmations < depositConfirmations) revert NotConfirmed(txid, confirmations, depositConfirmations);
        // 0x47: witness count (2) ‖ value (8) ‖ prevout txid (32) ‖ prevout vout (2) ‖ …
        (ok, out) = address(0x47).staticcall{gas: 50_000}(abi.encodePacked(txid, vin, uint16(0)));
        if (!ok || out.length < 44) revert NotAVaultSpend(txid, vin);
        bytes32 prevTxid = _word(out, 10);
        uint256 prevVout = uint16(bytes2(_word(out, 42)));
        (ok, out) = address(0x42).staticcall{gas: 100_000}(abi.encodePacked(prevTxid, bytes4(0x00380703)));
        if (!ok || out.length < 2) revert NotAVaultSpend(txid, vin);
        uint256 count = uint16(bytes2(_word(out, 0)));
        if (prevVout >= count || prevVout >= MAX_OUTPUTS) revert NotAVaultSpend(txid, vin);
        bytes32 vaultHash = keccak256(abi.encodePacked(bytes2(0x5120), vaultKey));
        uint256 at = 2;
        Out memory o;
        for (uint256 i = 0; i <= prevVout; i++) (o.value, o.fullLength, o.script, at) = _output(prevTxid, out, at);
        if (o.fullLength != 34 || keccak256(o.script) != vaultHash) revert NotAVaultSpend(txid, vin);

        string memory reason;
        if (payoutProcessed[txid]) {
            if (strayOutputs[txid] != 0) {
                reason = "a payout with outputs that pay no request";
            } else if (overpaidFee[txid] != 0) {
                reason = "a payout whose fee the vault paid beyond the requests' fee shares";
            } else {
                revert NotInvalid(txid, "a finalized payout: every output pays a request or the vault, and the requests paid its fee");
            }
        } else {
            (ok, out) = address(0x42).staticcall{gas: 100_000}(abi.encodePacked(txid, bytes4(0x00380703)));
            if (!ok || out.length < 2) revert UnknownTransaction(txid);
            count = uint16(bytes2(_word(out, 0)));
            (, uint256 idCount) = _payoutIds(txid, out, count > MAX_OUTPUTS ? MAX_OUTPUTS : count);
            if (idCount != 0) revert NotInvalid(txid, "lists request ids: finalizeWithdrawal it first");
            reason = "spends the vault and lists no request";
        }
        frozenAt = block.number;
        emit InvalidSpendReported(txid, vin, msg.sender, reason);
    }

    /// @dev One output of a 0x42 answer.
    struct Out {
        uint64 value;
        uint256 fullLength;
        bytes script;
    }

    /// @dev The request ids the payout's `OP_RETURN OP_PUSHDATA1 <len> "HEMW" ‖ u32…` outputs
    /// list, in order.
    function _payoutIds(bytes32 txid, bytes memory out, uint256 count)
        private
        pure
        returns (uint256[] memory ids, uint256 idCount)
    {
        ids = new uint256[](count * 31);
        uint256 at = 2;
        for (uint256 i = 0; i < count; i++) {
            Out memory o;
            (o.value, o.fullLength, o.script, at) = _output(txid, out, at);
            if (_isPayoutList(o)) {
                for (uint256 j = 7; j < o.fullLength; j += 4) ids[idCount++] = uint32(bytes4(_word(o.script, j)));
            }
        }
    }

    function _isPayoutList(Out memory o) private pure returns (bool) {
        return o.fullLength >= 11 && o.fullLength <= 128 && o.script[0] == 0x6a && o.script[1] == 0x4c
            && uint8(o.script[2]) == o.fullLength - 3 && bytes4(_word(o.script, 3)) == PAYOUT_TAG
            && (o.fullLength - 7) % 4 == 0;
    }

    /// @dev Whether output `o` pays request `id` as asked (then marked paid).
    function _pay(uint256 id, bytes32 txid, uint32 vout, Out memory o) private returns (bool) {
        Withdrawal storage w = withdrawals[id];
        if (w.status != Status.Pending) {
            emit WithdrawalNotPaid(id, txid, "not pending");
        } else if (o.fullLength != w.script.length || keccak256(o.script) != keccak256(w.script)) {
            emit WithdrawalNotPaid(id, txid, "pays another script");
        } else if (o.value > w.amount || o.value + w.maxFee < w.amount) {
            emit WithdrawalNotPaid(id, txid, "pays another amount");
        } else {
            w.status = Status.Paid;
            w.payoutTxid = txid;
            emit WithdrawalPaid(id, txid, vout, o.value);
            return true;
        }
        return false;
    }

    /// @notice Challenges request `id`, still unpaid `withdrawalDeadline` blocks after it was
    /// made: mints its hemiBTC back to the requester and marks the vault faulty.
    function challenge(uint256 id) external {
        Withdrawal storage w = withdrawals[id];
        if (w.status != Status.Pending) revert NotPending(id);
        uint256 deadline = uint256(w.requestedAt) + withdrawalDeadline;
        if (block.number < deadline) revert DeadlineNotReached(id, deadline);
        w.status = Status.Challenged;
        faulty = true;
        TOKEN.mint(w.requester, w.amount);
        emit WithdrawalChallenged(id, w.requester, w.amount);
    }

    /// @dev What a scan of a transaction's outputs found.
    struct Scan {
        uint256 vaultOutputs;
        bool paysAtVout;
        uint64 gross;
        uint256 opReturns;
        bytes opReturn;
        uint256 opReturnLength;
    }

    function _parse(bytes32 txid, uint32 vout, bytes memory out, uint32 confirmations)
        private
        view
        returns (uint64, address)
    {
        uint256 count = uint16(bytes2(_word(out, 0)));
        if (count > MAX_OUTPUTS) revert TooManyOutputs(count);
        bytes32 vaultHash = keccak256(abi.encodePacked(bytes2(0x5120), vaultKey));
        Scan memory scan;
        Out memory atVout;
        uint256 at = 2;
        for (uint256 i = 0; i < count; i++) {
            Out memory o;
            (o.value, o.fullLength, o.script, at) = _output(txid, out, at);
            if (i == vout) atVout = o;
            if (o.fullLength == 34 && keccak256(o.script) == vaultHash) {
                scan.vaultOutputs++;
                if (i == vout) {
                    scan.paysAtVout = true;
                    scan.gross = o.value;
                }
            } else if (o.fullLength > 0 && o.script[0] == 0x6a) {
                scan.opReturns++;
                scan.opReturn = o.script;
                scan.opReturnLength = o.fullLength;
            }
        }
        if (scan.vaultOutputs > 1) revert MultipleVaultOutputs(scan.vaultOutputs);
        if (!scan.paysAtVout) {
            bool p2tr = atVout.fullLength == 34 && atVout.script[0] == 0x51 && atVout.script[1] == 0x20;
            if (p2tr && scan.opReturns == 1 && _isHint(scan.opReturn, scan.opReturnLength)) {
                return (atVout.value, _taproot(txid, vout, _word(atVout.script, 2), scan.opReturn, confirmations));
            }
            revert NotVaultOutput(txid, vout);
        }
        if (scan.opReturns == 0) revert NoRecipient();
        if (scan.opReturns > 1) revert MultipleOpReturns(scan.opReturns);
        return (scan.gross, _recipient(scan.opReturn, scan.opReturnLength));
    }

    /// @dev `6a 4b "HEMT" …`: a taproot deposit's 75-byte hint.
    function _isHint(bytes memory s, uint256 length) private pure returns (bool) {
        return length == 77 && s[1] == 0x4b && bytes4(_word(s, 2)) == "HEMT";
    }

    /// @dev The recipient of the taproot deposit whose output key is `outputKey` and whose hint
    /// is `hint`, after checking that the hint's leaves build that key (see the contract docs).
    function _taproot(bytes32 txid, uint32 vout, bytes32 outputKey, bytes memory hint, uint32 confirmations)
        private
        view
        returns (address recipient)
    {
        if (uint8(hint[6]) != 1) revert BadTaprootDeposit("unknown version");
        uint64 chainId = uint64(bytes8(_word(hint, 7)));
        if (chainId != block.chainid) revert BadTaprootDeposit("for another chain id");
        recipient = address(bytes20(_word(hint, 15)));
        if (recipient == address(0)) revert ZeroRecipient();
        uint64 maxFee = uint64(bytes8(_word(hint, 35)));
        if (depositFee > maxFee) revert BadTaprootDeposit("the tunnel's fee is above the deposit's max fee");
        uint16 reclaimAfter = uint16(bytes2(_word(hint, 75)));
        if (uint256(confirmations) + SWEEP_BLOCKS > reclaimAfter) {
            revert ReclaimOpensTooSoon(reclaimAfter, uint256(confirmations) + SWEEP_BLOCKS);
        }
        bytes memory depositLeaf = abi.encodePacked(
            uint8(0x25), uint8(1), chainId, recipient, maxFee, bytes2(0x7520), vaultKey, uint8(0xac)
        );
        bytes memory reclaimLeaf =
            abi.encodePacked(_scriptNum(reclaimAfter), bytes3(0xb27520), _word(hint, 43), uint8(0xac));
        if (!_commits(outputKey, depositLeaf, reclaimLeaf)) revert NotDepositOutput(txid, vout);
    }

    /// @dev A minimal script number push of 1..=65535, as Bitcoin Core's CScript << n writes it.
    function _scriptNum(uint16 n) private pure returns (bytes memory) {
        if (n <= 16) return abi.encodePacked(uint8(0x50 + n));
        if (n < 0x80) return abi.encodePacked(uint8(1), uint8(n));
        if (n < 0x8000) return abi.encodePacked(uint8(2), uint8(n), uint8(n >> 8));
        return abi.encodePacked(uint8(3), uint8(n), uint8(n >> 8), uint8(0));
    }

    /// @dev BIP-340's tagged hash.
    function _tagged(string memory tag, bytes memory data) private pure returns (bytes32) {
        bytes32 t = sha256(bytes(tag));
        return sha256(abi.encodePacked(t, t, data));
    }

    function _tapLeaf(bytes memory script) private pure returns (bytes32) {
        return _tagged("TapLeaf", abi.encodePacked(uint8(0xc0), uint8(script.length), script));
    }

    /// @dev Whether x-only key `outputKey` is NUMS tweaked by the tree of leaves `a` and `b`:
    /// Q = NUMS + t·G, computed as ecrecover(−t·r, even, r, r) with r = NUMS.x (ecrecover returns
    /// r⁻¹(s·R − z·G) = R + t·G), compared with the address of (x, ±y) for the output key's x.
    function _commits(bytes32 outputKey, bytes memory a, bytes memory b) private view returns (bool) {
        bytes32 la = _tapLeaf(a);
        bytes32 lb = _tapLeaf(b);
        bytes32 root = la < lb ? _tagged("TapBranch", abi.encodePacked(la, lb)) : _tagged("TapBranch", abi.encodePacked(lb, la));
        uint256 t = uint256(_tagged("TapTweak", abi.encodePacked(NUMS, root)));
        if (t >= ORDER_N) return false;
        uint256 z = mulmod(t, uint256(NUMS), ORDER_N);
        address q = ecrecover(bytes32(z == 0 ? 0 : ORDER_N - z), 27, NUMS, NUMS);
        if (q == address(0)) return false;
        uint256 x = uint256(outputKey);
        if (x >= FIELD_P) return false;
        uint256 y2 = addmod(mulmod(mulmod(x, x, FIELD_P), x, FIELD_P), 7, FIELD_P);
        (bool ok, bytes memory r) = address(0x05).staticcall(abi.encode(32, 32, 32, y2, (FIELD_P + 1) / 4, FIELD_P));
        if (!ok || r.length != 32) return false;
        uint256 y = uint256(bytes32(r));
        if (mulmod(y, y, FIELD_P) != y2) return false;
        return q == _ethAddress(x, y) || q == _ethAddress(x, FIELD_P - y);
    }

    function _ethAddress(uint256 x, uint256 y) private pure returns (address) {
        return address(uint160(uint256(keccak256(abi.encodePacked(x, y)))));
    }

    /// @dev One output of a 0x42 answer at `at`: value, full script length, the script (cut at
    /// 128 bytes) and where the next output starts.
    function _output(bytes32 txid, bytes memory out, uint256 at)
        private
        pure
        returns (uint64 value, uint256 fullLength, bytes memory script, uint256 next)
    {
        if (out.length < at + 10) revert UnknownTransaction(txid);
        value = uint64(bytes8(_word(out, at)));
        fullLength = uint16(bytes2(_word(out, at + 8)));
        uint256 length = fullLength < 128 ? fullLength : 128;
        next = at + 10 + length;
        if (out.length < next) revert UnknownTransaction(txid);
        script = new bytes(length);
        for (uint256 j = 0; j < length; j++) script[j] = out[at + 10 + j];
    }

    /// @dev `s` is the OP_RETURN script, `length` its full length (`s` may be cut at 128 bytes).
    function _recipient(bytes memory s, uint256 length) private pure returns (address recipient) {
        uint256 dataLength = length >= 2 ? length - 2 : 0;
        if (length < 2 || (dataLength != 20 && dataLength != 40)) revert MalformedOpReturn(length);
        if (uint8(s[1]) != dataLength) revert PushMismatch(uint8(s[1]), dataLength);
        uint160 v;
        if (dataLength == 20) {
            for (uint256 i = 0; i < 20; i++) v = (v << 8) | uint8(s[2 + i]);
        } else {
            for (uint256 i = 0; i < 40; i++) v = (v << 4) | _nibble(uint8(s[2 + i]));
        }
        recipient = address(v);
        if (recipient == address(0)) revert ZeroRecipient();
    }

    function _nibble(uint8 c) private pure returns (uint160) {
        if (c >= 0x30 && c <= 0x39) return c - 0x30;
        if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
        if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
        revert BadHex();
    }

    function _key(bytes32 txid, uint32 vout) private pure returns (bytes32) {
        return keccak256(abi.encodePacked(txid, vout));
    }

    /// @dev The 32 bytes of `b` from `offset` (zero-padded past the end).
    function _word(bytes memory b, uint256 offset) private pure returns (bytes32 w) {
        assembly {
            w := mload(add(add(b, 32), offset))
        }
        if (offset + 32 > b.length) {
            uint256 keep = b.length > offset ? b.length - offset : 0;
            w = keep == 0 ? bytes32(0) : w & ~bytes32(type(uint256).max >> (keep * 8));
        }
    }
}
