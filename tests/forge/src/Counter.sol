// SPDX-License-Identifier: MIT
pragma solidity ^0.8.29;

/// @notice What tests/js/forge.mjs deploys with `forge create` and `forge script`.
contract Counter {
    uint256 public number;

    constructor(uint256 start) {
        number = start;
    }

    function increment() external {
        number += 1;
    }
}
