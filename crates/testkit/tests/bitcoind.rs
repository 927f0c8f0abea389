//! End-to-end tests of the test bed and the RPC client against a real Bitcoin Core.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, Secp256k1};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    Address, Amount, OutPoint, PrivateKey, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};
use hemi_btc_rpc_client::{BitcoinRpc, RpcError, ScanUtxo};
use hemi_testkit::{regtest_p2wpkh, shared, BitcoinCore};

const SECRET: [u8; 32] = [0x11; 32];
const SUBSIDY_SATS: u64 = 50 * 100_000_000;

/// Whether `pid` is a live (not zombie) process.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X') | None
        ),
        Err(_) => false,
    }
}

/// A one-input one-output P2WPKH spend of `utxo` to `to`, signed with `key`.
fn spend(key: &PrivateKey, utxo: &ScanUtxo, to: &Address, fee_sats: u64) -> Transaction {
    let secp = Secp256k1::new();
    let mut tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(utxo.txid, utxo.vout),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(utxo.amount_sats - fee_sats),
            script_pubkey: to.script_pubkey(),
        }],
    };
    let sighash = SighashCache::new(&tx)
        .p2wpkh_signature_hash(
            0,
            &utxo.script_pubkey,
            Amount::from_sat(utxo.amount_sats),
            EcdsaSighashType::All,
        )
        .unwrap();
    let msg = Message::from_digest(sighash.to_byte_array());
    let signature = bitcoin::ecdsa::Signature {
        signature: secp.sign_ecdsa(&msg, &key.inner),
        sighash_type: EcdsaSighashType::All,
    };
    tx.input[0].witness = Witness::p2wpkh(&signature, &key.public_key(&secp).inner);
    tx
}

#[tokio::test]
async fn mined_chain_reads_back_through_every_typed_call() {
    let core = BitcoinCore::start().await.unwrap();
    let (_, addr) = regtest_p2wpkh(&SECRET).unwrap();

    let hashes = core.mine(101, &addr).await.unwrap();
    assert_eq!(hashes.len(), 101);
    assert_eq!(core.rpc.get_block_count().await.unwrap(), 101);

    let best = core.rpc.get_best_block_hash().await.unwrap();
    assert_eq!(best, hashes[100]);
    assert_eq!(core.rpc.get_block_hash(101).await.unwrap(), best);
    let block = core.rpc.get_block(&best).await.unwrap();
    assert_eq!(block.block_hash(), best);
    assert_eq!(block.bip34_block_height().unwrap(), 101);
    assert_eq!(block.header.prev_blockhash, hashes[99]);
    assert_eq!(
        core.rpc.get_block_header(&best).await.unwrap(),
        block.header
    );

    let info = core.rpc.get_blockchain_info().await.unwrap();
    assert_eq!(info["chain"], "regtest");
    assert_eq!(info["blocks"], 101);

    // Coinbases are 50 BTC each below height 150 (regtest halves every 150 blocks).
    let scan = core
        .rpc
        .scan_tx_out_set_addresses(std::slice::from_ref(&addr))
        .await
        .unwrap();
    assert_eq!(scan.unspents.len(), 101);
    assert_eq!(scan.total_amount_sats, 101 * SUBSIDY_SATS);
    let mut heights: Vec<u32> = scan.unspents.iter().map(|u| u.height).collect();
    heights.sort_unstable();
    assert_eq!(heights, (1..=101).collect::<Vec<_>>());
    for utxo in &scan.unspents {
        assert_eq!(utxo.amount_sats, SUBSIDY_SATS);
        assert_eq!(utxo.script_pubkey, addr.script_pubkey());
        // -txindex=1 lets getrawtransaction find confirmed transactions.
        let tx = core.rpc.get_raw_transaction(&utxo.txid).await.unwrap();
        assert!(tx.is_coinbase());
        assert_eq!(tx.compute_txid(), utxo.txid);
    }

    assert_eq!(core.rpc.estimate_smart_fee(6).await.unwrap(), None);
    assert!(core.rpc.get_peer_info().await.unwrap().is_empty());
}

#[tokio::test]
async fn coinbase_spend_is_accepted_only_once_mature_and_mines_via_generateblock() {
    let core = BitcoinCore::start().await.unwrap();
    let (key, addr) = regtest_p2wpkh(&SECRET).unwrap();
    let (_, dest) = regtest_p2wpkh(&[0x22; 32]).unwrap();
    core.mine(101, &addr).await.unwrap();
    let scan = core
        .rpc
        .scan_tx_out_set_addresses(std::slice::from_ref(&addr))
        .await
        .unwrap();
    let at = |h: u32| scan.unspents.iter().find(|u| u.height == h).unwrap();

    // Tip 101: the next block is 102, so coinbases at heights ≤ 2 have 100 confirmations there.
    let mature = spend(&key, at(1), &dest, 1_000);
    let immature = spend(&key, at(3), &dest, 1_000);
    let verdicts = core
        .rpc
        .test_mempool_accept(std::slice::from_ref(&mature))
        .await
        .unwrap();
    assert_eq!(verdicts[0]["allowed"], true, "{verdicts:?}");
    let verdicts = core.rpc.test_mempool_accept(&[immature]).await.unwrap();
    assert_eq!(verdicts[0]["allowed"], false, "{verdicts:?}");
    assert_eq!(
        verdicts[0]["reject-reason"],
        "bad-txns-premature-spend-of-coinbase"
    );

    // Below the 1 sat/vB minimum relay fee Core answers -26 and we keep its message.
    let too_cheap = spend(&key, at(2), &dest, 0);
    let err = core.rpc.send_raw_transaction(&too_cheap).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::Rpc { code: -26, message } if message.contains("min relay fee not met")),
        "{err:?}"
    );

    let txid = core.rpc.send_raw_transaction(&mature).await.unwrap();
    assert_eq!(txid, mature.compute_txid());
    assert_eq!(core.rpc.get_raw_mempool().await.unwrap(), vec![txid]);
    let entry = core.rpc.get_mempool_entry(&txid).await.unwrap();
    assert_eq!(entry["vsize"], mature.vsize());

    // A conflicting spend paying no more fee cannot replace it (RBF): -26, "insufficient fee".
    let conflict = spend(&key, at(1), &addr, 1_000);
    let err = core.rpc.send_raw_transaction(&conflict).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::Rpc { code: -26, message } if message.contains("insufficient fee")),
        "{err:?}"
    );

    let hash = core
        .rpc
        .generate_block(&addr, std::slice::from_ref(&mature))
        .await
        .unwrap();
    let block = core.rpc.get_block(&hash).await.unwrap();
    assert_eq!(block.txdata.len(), 2);
    assert_eq!(block.txdata[1].compute_txid(), txid);
    assert!(core.rpc.get_raw_mempool().await.unwrap().is_empty());
    let dest_scan = core.rpc.scan_tx_out_set_addresses(&[dest]).await.unwrap();
    assert_eq!(dest_scan.total_amount_sats, SUBSIDY_SATS - 1_000);

    // Reorg it away and back.
    core.rpc.invalidate_block(&hash).await.unwrap();
    assert_eq!(core.rpc.get_block_count().await.unwrap(), 101);
    assert_eq!(core.rpc.get_raw_mempool().await.unwrap(), vec![txid]);
    core.rpc.reconsider_block(&hash).await.unwrap();
    assert_eq!(core.rpc.get_best_block_hash().await.unwrap(), hash);
}

#[tokio::test]
async fn core_errors_keep_their_code_and_message() {
    let core = BitcoinCore::start().await.unwrap();

    let err = core.rpc.get_block_hash(1_000_000).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::Rpc { code: -8, message } if message.contains("out of range")),
        "{err:?}"
    );
    let unknown = bitcoin::BlockHash::all_zeros();
    assert_eq!(
        core.rpc.get_block(&unknown).await.unwrap_err().rpc_code(),
        Some(-5)
    );
    let err = core
        .rpc
        .call::<serde_json::Value>("nosuchmethod", serde_json::json!([]))
        .await
        .unwrap_err();
    assert_eq!(err.rpc_code(), Some(-32601), "{err:?}");

    let wrong_password = BitcoinRpc::with_auth(&core.rpc_url(), "hemi", "wrong").unwrap();
    let err = wrong_password.get_block_count().await.unwrap_err();
    assert!(matches!(err, RpcError::Http { status: 401, .. }), "{err:?}");

    // The URL form with credentials works as well as explicit auth.
    let by_url = BitcoinRpc::new(&core.rpc_url()).unwrap();
    assert_eq!(by_url.get_block_count().await.unwrap(), 0);
}

#[tokio::test]
async fn cookie_auth_works_against_core() {
    /// Kills the hand-started bitcoind even if an assertion fails.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    // Without -rpcpassword Core writes <datadir>/regtest/.cookie.
    let datadir = tempfile::tempdir().unwrap();
    let port = hemi_testkit::free_port();
    let bitcoind = hemi_testkit::bitcoind_path().unwrap();
    let _child = KillOnDrop(
        Command::new(bitcoind)
            .args([
                "-regtest".to_owned(),
                format!("-datadir={}", datadir.path().display()),
                "-server=1".to_owned(),
                format!("-rpcport={port}"),
                "-rpcbind=127.0.0.1".to_owned(),
                "-rpcallowip=127.0.0.1".to_owned(),
                "-listen=0".to_owned(),
                "-printtoconsole=0".to_owned(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let cookie = datadir.path().join("regtest/.cookie");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cookie.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rpc = BitcoinRpc::with_cookie_file(&format!("http://127.0.0.1:{port}"), &cookie).unwrap();
    rpc.wait_ready(Duration::from_secs(60)).await.unwrap();
    assert_eq!(rpc.get_block_count().await.unwrap(), 0);
}

#[tokio::test]
async fn dropped_core_leaves_no_process_and_no_datadir() {
    let core = BitcoinCore::start().await.unwrap();
    let pid = core.pid();
    let datadir = core.datadir.path().to_owned();
    let rpc = core.rpc.clone();
    assert!(alive(pid));
    drop(core);
    assert!(!alive(pid), "bitcoind {pid} survived drop");
    assert!(!datadir.exists());
    assert!(matches!(
        rpc.get_block_count().await,
        Err(RpcError::Transport(_))
    ));
}

#[tokio::test]
async fn stop_shuts_core_down_cleanly() {
    let core = BitcoinCore::start_with(&[hemi_testkit::WHITELIST_LOOPBACK])
        .await
        .unwrap();
    let pid = core.pid();
    core.stop().await.unwrap();
    assert!(!alive(pid));
}

#[tokio::test]
async fn two_cores_connect_over_p2p_and_sync() {
    let a = BitcoinCore::start().await.unwrap();
    let b = BitcoinCore::start().await.unwrap();
    let (_, addr) = regtest_p2wpkh(&SECRET).unwrap();
    let tip = *a.mine(5, &addr).await.unwrap().last().unwrap();
    b.rpc
        .add_node(&a.p2p_addr().to_string(), "onetry")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.rpc.get_best_block_hash().await.unwrap() != tip {
        assert!(Instant::now() < deadline, "b did not sync from a");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(a.rpc.get_peer_info().await.unwrap().len(), 1);
}

#[tokio::test]
async fn unknown_option_is_reported_with_cores_message() {
    // -upnp was removed from Bitcoin Core (v29); an unknown option stops start-up.
    let err = BitcoinCore::start_with(&["-upnp=0"]).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("Invalid parameter -upnp"), "{text}");
}

#[tokio::test]
async fn shared_core_serves_async_tests() {
    let shared = shared().unwrap();
    let rpc = shared.rpc().unwrap();
    let (_, addr) = regtest_p2wpkh(&SECRET).unwrap();
    let before = rpc.get_block_count().await.unwrap();
    let mined = rpc.generate_to_address(2, &addr).await.unwrap();
    assert_eq!(mined.len(), 2);
    assert!(rpc.get_block_count().await.unwrap() >= before + 2);
}

#[test]
fn shared_core_serves_sync_tests_too() {
    let shared = shared().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let info = rt
        .block_on(shared.rpc().unwrap().get_blockchain_info())
        .unwrap();
    assert_eq!(info["chain"], "regtest");
    assert!(alive(shared.pid()));
}

/// Helper run in a child test process by `watchdog_kills_core_when_the_test_process_dies`.
#[tokio::test]
#[ignore = "helper: runs only inside watchdog_kills_core_when_the_test_process_dies"]
async fn watchdog_helper_starts_core_then_aborts() {
    if std::env::var_os("HEMI_TESTKIT_WATCHDOG_HELPER").is_none() {
        return;
    }
    let core = BitcoinCore::start().await.unwrap();
    println!(
        "PID {} DATADIR {}",
        core.pid(),
        core.datadir.path().display()
    );
    // Die without running any destructor, as a crashed or SIGKILLed test would.
    std::process::abort();
}

#[test]
fn watchdog_kills_core_when_the_test_process_dies() {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "watchdog_helper_starts_core_then_aborts",
            "--ignored",
            "--nocapture",
        ])
        .env("HEMI_TESTKIT_WATCHDOG_HELPER", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(helper.stdout.take().unwrap());
    let line = stdout
        .lines()
        .map(Result::unwrap)
        .find(|l| l.starts_with("PID "))
        .expect("helper printed no PID line");
    let _ = helper.wait();
    let mut words = line.split_whitespace();
    let pid: u32 = words.nth(1).unwrap().parse().unwrap();
    let datadir = std::path::PathBuf::from(words.nth(1).unwrap());

    let deadline = Instant::now() + Duration::from_secs(10);
    while (alive(pid) || datadir.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!alive(pid), "bitcoind {pid} outlived its test process");
    assert!(!datadir.exists(), "{} left behind", datadir.display());
}
