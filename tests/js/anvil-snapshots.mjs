// anvil's state snapshots on the hemi devnet, differentially against anvil: evm_snapshot,
// a transfer, evm_revert must put balance, nonce, receipt and head back the same way on both,
// answer a reverted or unknown id with false, and take the reverted nonce again.
import { differentialAgainstAnvil, devWallet, waitReceipt } from './lib.mjs'

const TO = '0x00000000000000000000000000000000000cafe1'

async function exercise(p) {
  const wallet = devWallet(7, p)
  const from = await wallet.getAddress()
  const out = {}
  const before = {
    n: await p.getBlockNumber(),
    bal: await p.getBalance(TO),
    nonce: await p.getTransactionCount(from),
  }
  const id = await p.send('evm_snapshot', [])
  out.idIsQuantity = /^0x[0-9a-f]+$/.test(id)
  const tx = await wallet.sendTransaction({ to: TO, value: 5n, nonce: before.nonce })
  await waitReceipt(tx, 'transfer after the snapshot')
  out.minedAfterSnapshot = (await p.getBalance(TO)) === before.bal + 5n
  out.reverted = await p.send('evm_revert', [id])
  out.balanceBack = (await p.getBalance(TO)) === before.bal
  out.nonceBack = (await p.getTransactionCount(from)) === before.nonce
  out.receiptGone = (await p.send('eth_getTransactionReceipt', [tx.hash])) === null
  // The devnet also makes a block every block time: at most one since.
  const head = await p.getBlockNumber()
  out.headBack = head >= before.n && head <= before.n + 1
  out.secondRevert = await p.send('evm_revert', [id])
  out.unknownRevert = await p.send('evm_revert', ['0x999'])
  const again = await wallet.sendTransaction({ to: TO, value: 7n, nonce: before.nonce })
  await waitReceipt(again, 'the reverted nonce again')
  out.revertedNonceTakenAgain = (await p.getBalance(TO)) === before.bal + 7n
  return out
}

await differentialAgainstAnvil('anvil-snapshots.mjs', exercise)
