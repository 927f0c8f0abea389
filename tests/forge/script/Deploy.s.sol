// SPDX-License-Identifier: MIT
pragma solidity ^0.8.29;

import {Counter} from "../src/Counter.sol";

/// The two cheatcodes a broadcast needs, without forge-std.
interface Vm {
    function startBroadcast() external;
    function stopBroadcast() external;
}

/// `forge script script/Deploy.s.sol --broadcast`: deploys a Counter from 41 and increments it.
contract Deploy {
    Vm constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    function run() external returns (Counter c) {
        vm.startBroadcast();
        c = new Counter(41);
        c.increment();
        vm.stopBroadcast();
    }
}
