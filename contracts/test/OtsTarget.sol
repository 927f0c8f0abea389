// SPDX-License-Identifier: MIT
pragma solidity ^0.8.29;

/// @notice Otterscan fixtures (tests/js/ots.mjs runs them on hemi and anvil): a factory that
/// makes children with CREATE2 and CREATE, passing value on; a child that forwards value with a
/// CALL; a call that reverts with a reason.
contract OtsChild {
    constructor() payable {}

    function forward(address payable to) external payable {
        (bool ok, ) = to.call{value: msg.value}("");
        require(ok, "forward failed");
    }
}

contract OtsFactory {
    event Made(address child);

    function make(bytes32 salt) external payable returns (OtsChild c) {
        c = new OtsChild{salt: salt, value: msg.value}();
        emit Made(address(c));
    }

    function makePlain() external payable returns (OtsChild c) {
        c = new OtsChild{value: msg.value}();
        emit Made(address(c));
    }

    function payThrough(OtsChild c, address payable to) external payable {
        c.forward{value: msg.value}(to);
    }

    function fail() external pure {
        revert("ots: nope");
    }
}
