"""web3.py v7 (PyPI, unchanged) against RPC_URL (HTTP) and WS_URL (WebSocket).

Prints one JSON line on success; on failure prints `web3_client.py: FAIL in step "...": ...`
with the traceback to stderr and exits 1. The ERC-20 is the artifact that tests/js/compile.mjs
(solc-js) writes to tests/js/build/; it is compiled first if missing or older than its source.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

import web3
from eth_account import Account
from web3 import AsyncWeb3, Web3
from web3.exceptions import ContractLogicError, ExtraDataLengthError, Web3RPCError
from web3.middleware import SignAndSendRawMiddlewareBuilder

SCRIPT = "web3_client.py"
RPC_URL = os.environ.get("RPC_URL", "http://127.0.0.1:8545")
WS_URL = os.environ.get("WS_URL") or "ws" + RPC_URL[len("http") :]
TIMEOUT = float(os.environ.get("TEST_TIMEOUT_MS", "30000")) / 1000
CHAIN_ID = 31337

# Dev accounts 0 and 3 of "test test ... junk" (ethers.mjs uses 1, cast.mjs 2).
KEY0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ADDR0 = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
KEY3 = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6"
ADDR3 = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
BTC_ATTRIBUTES_TX_TYPE = 0x7C

JS_DIR = Path(__file__).resolve().parent.parent / "js"
CONTRACTS_DIR = JS_DIR.parent.parent / "contracts"
ARTIFACT = JS_DIR / "build" / "TestToken.json"

current_step = "setup"


@contextmanager
def step(label):
    global current_step
    current_step = label
    yield


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def expect_eq(actual, expected, what):
    check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def load_token_artifact():
    """tests/js/build/TestToken.json, (re)compiled with `node compile.mjs` if missing or stale."""
    sources = [p.stat().st_mtime for p in CONTRACTS_DIR.rglob("*.sol")]
    if not ARTIFACT.exists() or ARTIFACT.stat().st_mtime < max(sources, default=0):
        if not (JS_DIR / "node_modules").exists():
            raise RuntimeError(
                f"{ARTIFACT} is missing and {JS_DIR}/node_modules too: "
                "run `npm install --prefix tests/js` (scripts/test.sh does)"
            )
        out = subprocess.run(
            ["node", "compile.mjs"], cwd=JS_DIR, capture_output=True, text=True, timeout=300
        )
        check(out.returncode == 0, f"node compile.mjs failed: {out.stderr.strip()}")
    artifact = json.loads(ARTIFACT.read_text())
    return artifact["abi"], artifact["bytecode"]


def wait_receipt(w3, tx_hash, label):
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=TIMEOUT, poll_latency=0.2)
    check(receipt["status"] == 1, f"{label} ({tx_hash.to_0x_hex()}) failed: {dict(receipt)}")
    return receipt


def eip1559_fees(w3):
    """maxFeePerGas / maxPriorityFeePerGas from the node (eth_maxPriorityFeePerGas + base fee)."""
    tip = w3.eth.max_priority_fee
    base = w3.eth.get_block("latest")["baseFeePerGas"]
    return {"maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base + tip}


def poll(fn, label, interval=0.2):
    deadline = time.monotonic() + TIMEOUT
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {TIMEOUT}s: {label}")
        time.sleep(interval)


async def ws_new_heads(count=3):
    """newHeads over WebSocket with AsyncWeb3 + WebSocketProvider: `count` increasing blocks,
    through web3's default middleware (which validates each header's extraData)."""
    seen = []
    async with AsyncWeb3(AsyncWeb3.WebSocketProvider(WS_URL)) as aw3:
        expect_eq(await aw3.eth.chain_id, CHAIN_ID, "eth_chainId over WS")
        sub_id = await aw3.eth.subscribe("newHeads")
        async for msg in aw3.socket.process_subscriptions():
            head = msg["result"]
            check(len(head["extraData"]) <= 32, f"newHeads extraData {head['extraData']!r}")
            seen.append(head["number"])
            if len(seen) == count:
                break
        check(await aw3.eth.unsubscribe(sub_id), "eth_unsubscribe returned false")
    check(all(a < b for a, b in zip(seen, seen[1:])), f"block numbers must increase: {seen}")
    return seen


def main():
    w3 = Web3(Web3.HTTPProvider(RPC_URL, request_kwargs={"timeout": TIMEOUT}))
    alice = Account.from_key(KEY0)
    dave = Account.from_key(KEY3)
    expect_eq(alice.address, ADDR0, "account 0 from its key")
    expect_eq(dave.address, ADDR3, "account 3 from its key")

    with step("is_connected / web3_clientVersion / net_version"):
        check(w3.is_connected(), f"not connected to {RPC_URL}")
        client_version = w3.client_version
        expect_eq(w3.net.version, str(CHAIN_ID), "net_version")

    # web3.py's default ValidationMiddleware rejects any block whose extraData exceeds 32 bytes
    # (ExtraDataLengthError, "connected to a POA chain"). Hemi's headers carry no seal (the
    # sequencer's signature travels next to the block), so the unchanged client must read them;
    # no ExtraDataToPOAMiddleware anywhere in this script.
    with step("eth_getBlockByNumber with web3's default middleware (no POA middleware)"):
        try:
            first = w3.eth.get_block("latest")
        except ExtraDataLengthError as e:
            raise AssertionError(
                "web3.py's default middleware refused a block's extraData (the header must not "
                f"carry the seal): {e}"
            ) from e
        expect_eq(first["extraData"], b"", "extraData of the latest block")

    with step("eth_chainId"):
        chain_id = w3.eth.chain_id
        expect_eq(chain_id, CHAIN_ID, "chain id")

    with step("eth_blockNumber"):
        start_block = w3.eth.block_number
        check(isinstance(start_block, int) and start_block >= 0, f"block_number {start_block!r}")

    with step("eth_getBalance of dev account 0"):
        balance0 = w3.eth.get_balance(alice.address)
        check(balance0 > 0, f"dev account 0 holds {balance0} wei")
        check(balance0 <= Web3.to_wei(10_000, "ether"), f"dev account 0 holds {balance0} wei")

    value = Web3.to_wei(1.25, "ether")
    with step("EIP-1559 ETH transfer (eth_account sign + send_raw_transaction)"):
        tx = {
            "type": 2,
            "chainId": chain_id,
            "nonce": w3.eth.get_transaction_count(alice.address, "pending"),
            "from": alice.address,
            "to": dave.address,
            "value": value,
            **eip1559_fees(w3),
        }
        tx["gas"] = w3.eth.estimate_gas(tx)
        expect_eq(tx["gas"], 21_000, "eth_estimateGas of a plain transfer")
        del tx["from"]
        signed = alice.sign_transaction(tx)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        expect_eq(tx_hash, signed.hash, "send_raw_transaction returns the signed hash")
        eth_receipt = wait_receipt(w3, tx_hash, "ETH transfer")
        expect_eq(eth_receipt["type"], 2, "receipt type")
        expect_eq(eth_receipt["to"], dave.address, "receipt to")
        n = eth_receipt["blockNumber"]
        delta = w3.eth.get_balance(dave.address, n) - w3.eth.get_balance(dave.address, n - 1)
        expect_eq(delta, value, "recipient balance delta")
        paid = w3.eth.get_balance(alice.address, n - 1) - w3.eth.get_balance(alice.address, n)
        fee = eth_receipt["gasUsed"] * eth_receipt["effectiveGasPrice"]
        expect_eq(paid, value + fee, "sender pays value + gasUsed * effectiveGasPrice")
        got = w3.eth.get_transaction(tx_hash)
        expect_eq((got["type"], got["value"], got["to"]), (2, value, dave.address), "get_transaction")

    with step("eth_getBlockByNumber(latest / the transfer's block, full_transactions=True)"):
        latest = w3.eth.get_block("latest", full_transactions=True)
        txs = latest["transactions"]
        check(len(txs) >= 1, f"block {latest['number']} has no transactions")
        expect_eq(txs[0]["type"], BTC_ATTRIBUTES_TX_TYPE, "type of a block's first transaction")
        block = w3.eth.get_block(eth_receipt["blockNumber"], full_transactions=True)
        expect_eq(block["transactions"][0]["type"], BTC_ATTRIBUTES_TX_TYPE, "first tx type")
        mine = [t for t in block["transactions"] if t["hash"] == eth_receipt["transactionHash"]]
        expect_eq(len(mine), 1, "the transfer in its block's full transactions")
        expect_eq(mine[0]["from"], alice.address, "from of the transfer")
        system_tx = block["transactions"][0]["hash"]
        expect_eq(
            w3.eth.get_transaction(system_tx)["type"], BTC_ATTRIBUTES_TX_TYPE, "0x7C by hash"
        )
        expect_eq(w3.eth.get_transaction_receipt(system_tx)["status"], 1, "0x7C receipt status")
        by_hash = w3.eth.get_block(block["hash"])
        expect_eq(by_hash["number"], block["number"], "get_block by hash")

    with step("eth_feeHistory"):
        history = w3.eth.fee_history(4, "latest", [25, 75])
        expect_eq(len(history["baseFeePerGas"]), 5, "feeHistory baseFeePerGas length")
        expect_eq(len(history["gasUsedRatio"]), 4, "feeHistory gasUsedRatio length")
        expect_eq(len(history["reward"]), 4, "feeHistory reward length")
        check(all(len(r) == 2 for r in history["reward"]), f"rewards {history['reward']}")
        gas_price = w3.eth.gas_price
        check(gas_price > 0, f"eth_gasPrice {gas_price}")

    with step("compile (tests/js/compile.mjs artifact)"):
        abi, bytecode = load_token_artifact()

    supply = Web3.to_wei(1_000_000, "ether")
    with step("deploy TestToken (build_transaction + sign)"):
        factory = w3.eth.contract(abi=abi, bytecode=bytecode)
        deploy_tx = factory.constructor("Web3py Token", "W3P", supply).build_transaction(
            {
                "from": alice.address,
                "nonce": w3.eth.get_transaction_count(alice.address, "pending"),
                "chainId": chain_id,
            }
        )
        check("maxFeePerGas" in deploy_tx, f"build_transaction did not pick EIP-1559: {deploy_tx}")
        deploy_receipt = wait_receipt(
            w3,
            w3.eth.send_raw_transaction(alice.sign_transaction(deploy_tx).raw_transaction),
            "TestToken deployment",
        )
        token_address = deploy_receipt["contractAddress"]
        check(token_address, f"deployment receipt has no contractAddress: {dict(deploy_receipt)}")
        check(len(w3.eth.get_code(token_address)) > 0, "no code at the token address")
        token = w3.eth.contract(address=token_address, abi=abi)
        expect_eq(token.functions.symbol().call(), "W3P", "symbol()")
        expect_eq(token.functions.totalSupply().call(), supply, "totalSupply()")
        expect_eq(token.functions.balanceOf(alice.address).call(), supply, "balanceOf(alice)")
        deploy_block = deploy_receipt["blockNumber"]

    amount = Web3.to_wei(123.45, "ether")
    with step("token transfer (SignAndSendRawMiddleware, transact)"):
        w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(alice), layer=0)
        estimate = token.functions.transfer(dave.address, amount).estimate_gas(
            {"from": alice.address}
        )
        check(21_000 < estimate < 200_000, f"estimate_gas of transfer: {estimate}")
        transfer_receipt = wait_receipt(
            w3,
            token.functions.transfer(dave.address, amount).transact({"from": alice.address}),
            "token transfer",
        )
        check(transfer_receipt["gasUsed"] <= estimate, f"gasUsed > estimate {estimate}")
        expect_eq(token.functions.balanceOf(dave.address).call(), amount, "balanceOf(dave)")
        expect_eq(
            token.functions.balanceOf(alice.address).call(), supply - amount, "balanceOf(alice)"
        )
        events = token.events.Transfer().process_receipt(transfer_receipt)
        expect_eq(len(events), 1, "Transfer events in the receipt")
        expect_eq(
            dict(events[0]["args"]),
            {"from": alice.address, "to": dave.address, "value": amount},
            "decoded Transfer",
        )

    with step("Transfer logs (contract.events.Transfer.get_logs, eth_getLogs)"):
        logs = token.events.Transfer.get_logs(from_block=deploy_block, to_block="latest")
        expect_eq(len(logs), 2, "mint + transfer logs")
        expect_eq(logs[0]["args"]["from"], "0x" + "00" * 20, "mint from the zero address")
        expect_eq(logs[1]["transactionHash"], transfer_receipt["transactionHash"], "transfer log")
        exact = token.events.Transfer.get_logs(
            argument_filters={"from": alice.address, "to": dave.address},
            from_block=transfer_receipt["blockNumber"],
            to_block=transfer_receipt["blockNumber"],
        )
        expect_eq(len(exact), 1, "logs filtered by from/to")
        expect_eq(exact[0]["args"]["value"], amount, "filtered log value")
        topic0 = Web3.keccak(text="Transfer(address,address,uint256)")
        raw = w3.eth.get_logs(
            {
                "address": token_address,
                "topics": [topic0, None, "0x" + "00" * 12 + dave.address[2:].lower()],
                "fromBlock": deploy_block,
                "toBlock": "latest",
            }
        )
        expect_eq(len(raw), 1, "eth_getLogs by topic0 + to")
        expect_eq(int.from_bytes(raw[0]["data"], "big"), amount, "raw log data")
        none = token.events.Transfer.get_logs(
            argument_filters={"from": dave.address}, from_block=deploy_block
        )
        expect_eq(len(none), 0, "no Transfer from dave yet")

    with step("filters (create_filter + get_new_entries, eth_newBlockFilter)"):
        log_filter = token.events.Transfer.create_filter(
            from_block="latest", argument_filters={"to": dave.address}
        )
        block_filter = w3.eth.filter("latest")
        second = Web3.to_wei(7, "ether")
        second_receipt = wait_receipt(
            w3,
            token.functions.transfer(dave.address, second).transact({"from": alice.address}),
            "token transfer for the filter",
        )
        entries = poll(log_filter.get_new_entries, "the Transfer through the log filter")
        expect_eq(len(entries), 1, "new filter entries")
        expect_eq(entries[0]["transactionHash"], second_receipt["transactionHash"], "entry tx")
        expect_eq(entries[0]["args"]["value"], second, "entry value")
        expect_eq(log_filter.get_new_entries(), [], "entries are returned once")
        new_blocks = poll(block_filter.get_new_entries, "a block hash from eth_newBlockFilter")
        check(all(len(h) == 32 for h in new_blocks), f"block filter entries {new_blocks}")
        all_entries = log_filter.get_all_entries()
        check(len(all_entries) >= 1, "eth_getFilterLogs returned nothing")
        check(w3.eth.uninstall_filter(log_filter.filter_id), "uninstall log filter")
        check(w3.eth.uninstall_filter(block_filter.filter_id), "uninstall block filter")

    with step("error paths (unknown RPC method, reverts, missing contract function)"):
        try:
            w3.manager.request_blocking("eth_noSuchMethod", [])
            raise AssertionError("eth_noSuchMethod did not fail")
        except Web3RPCError as e:
            expect_eq(e.rpc_response["error"]["code"], -32601, f"unknown method error {e}")
        try:
            token.functions.transfer(dave.address, supply * 2).call({"from": alice.address})
            raise AssertionError("a transfer above the balance did not revert")
        except ContractLogicError as e:
            check("insufficient balance" in str(e), f"revert reason in {e!r}")
        try:
            token.functions.transfer(dave.address, supply * 2).estimate_gas({"from": alice.address})
            raise AssertionError("estimate_gas of a reverting transfer did not fail")
        except ContractLogicError as e:
            check("insufficient balance" in str(e), f"revert reason in {e!r}")
        missing_abi = [
            {
                "type": "function",
                "name": "mint",
                "stateMutability": "nonpayable",
                "inputs": [{"name": "to", "type": "address"}],
                "outputs": [],
            }
        ]
        try:
            w3.eth.contract(address=token_address, abi=missing_abi).functions.mint(
                alice.address
            ).call()
            raise AssertionError("calling a function the contract lacks did not revert")
        except ContractLogicError as e:
            missing_error = str(e)

    with step("WebSocket newHeads subscription (AsyncWeb3 + WebSocketProvider)"):
        ws_blocks = asyncio.run(asyncio.wait_for(ws_new_heads(), TIMEOUT))

    return {
        "script": SCRIPT,
        "ok": True,
        "web3": web3.__version__,
        "rpc": RPC_URL,
        "ws": WS_URL,
        "clientVersion": client_version,
        # web3.py read every block with its default middleware, no POA workaround (the script
        # fails above otherwise).
        "unchangedClient": True,
        "chainId": chain_id,
        "startBlock": start_block,
        "ethTransfer": eth_receipt["transactionHash"].to_0x_hex(),
        "systemTx": system_tx.to_0x_hex(),
        "token": token_address,
        "tokenTransfer": transfer_receipt["transactionHash"].to_0x_hex(),
        "filterTransfer": second_receipt["transactionHash"].to_0x_hex(),
        "missingFunctionError": missing_error,
        "wsBlocks": ws_blocks,
    }


if __name__ == "__main__":
    try:
        summary = main()
    except BaseException:  # noqa: BLE001 - any failure fails the script with its step
        print(f'{SCRIPT}: FAIL in step "{current_step}": {traceback.format_exc()}', file=sys.stderr)
        sys.exit(1)
    print(json.dumps(summary))
