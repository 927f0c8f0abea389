// SPDX-License-Identifier: MIT
pragma solidity ^0.8.29;

/// @notice Tracing fixtures: a call that writes storage, emits a log, returns a value and makes a
/// nested call that reverts and is caught (tests/js/trace.mjs traces it on hemi and anvil).
contract TraceCallee {
    uint256 public x;

    event Set(uint256 indexed value);

    function set(uint256 v) external returns (uint256) {
        x = v;
        emit Set(v);
        return v * 2;
    }

    function boom() external pure {
        revert("boom");
    }
}

contract TraceCaller {
    TraceCallee public immutable callee;

    constructor(TraceCallee c) {
        callee = c;
    }

    function run(uint256 v) external returns (uint256 r) {
        r = callee.set(v);
        try callee.boom() {} catch {}
    }
}
