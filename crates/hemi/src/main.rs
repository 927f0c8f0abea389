//! `hemi`: the hemi-rs binary, a CLI over the library crates. `hemi devnet` runs every part in
//! one process (like anvil); `hemi node` follows an external Bitcoin Core; `hemi popm` runs the
//! PoP miner; `hemi custodian` runs a tunnel vault custodian; `hemi deposit` locks BTC in the
//! tunnel; `hemi provenance` / `hemi verify` make and check a deposit's provenance document;
//! `hemi bench` runs the benchmarks. The node itself is `hemi-node`.

mod config;
mod custodian;
mod deposit;
mod force_tx;
mod popm;
mod provenance;
mod sequencer_key;

use clap::{Parser, Subcommand};

/// jemalloc, as reth uses: the block path allocates many small trie nodes.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// hemi-rs: an EVM Layer-2 that Bitcoin secures.
#[derive(Debug, Parser)]
#[command(name = "hemi", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Zero-set-up development network in one process: an embedded Bitcoin regtest node that
    /// mines real blocks, the Bitcoin client and the JSON-RPC server.
    Devnet(config::DevnetArgs),
    /// A node that follows external Bitcoin Core peers and serves the JSON-RPC API.
    Node(config::NodeArgs),
    /// The Proof-of-Proof miner: publishes every keystone in Bitcoin.
    Popm(popm::PopmArgs),
    /// A tunnel vault custodian as its own process: identity, distributed key generation,
    /// the signing service.
    #[command(subcommand)]
    Custodian(custodian::CustodianCommand),
    /// Lock BTC in the tunnel from a key (`--format hemi|hemi-hex|taproot`), or `reclaim` a
    /// taproot deposit after its timelock.
    Deposit(deposit::DepositArgs),
    /// Publish a signed L2 transaction in Bitcoin: the sequencers must include it within the
    /// forced-inclusion window once Bitcoin confirms it.
    ForceTx(force_tx::ForceTxArgs),
    /// A minted deposit's provenance document (BTC lock, L2 ordering, PoP anchoring) from a node.
    Provenance(provenance::ProvenanceArgs),
    /// Checks a provenance document offline: every hash, Merkle branch, trie proof, seal,
    /// header link and proof of work.
    Verify(provenance::VerifyArgs),
    /// A sequencer-set validator key (made, or read back) and its entry for the validators
    /// file that `hemi node --validators` reads.
    SequencerKey(sequencer_key::SequencerKeyArgs),
    /// Benchmarks that run real processes side by side (results go in docs/BENCHMARKS.md).
    #[command(subcommand)]
    Bench(hemi_bench::BenchCommand),
}

/// The default log filter: `info`, with the BFT engine's own chatter (per-round phase changes,
/// dial retries while a set's peers come up) kept to warnings; `RUST_LOG` replaces it.
const DEFAULT_LOG: &str = "info,arc_malachitebft=warn,arc_malachitebft_network=off";

/// Logs to stderr, filtered by `RUST_LOG` (default [`DEFAULT_LOG`]).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DEFAULT_LOG));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Devnet(args) => hemi_node::devnet(args.resolve()?).await,
            Command::Node(args) => hemi_node::node(args.resolve()?).await,
            Command::Popm(args) => popm::run(args).await,
            Command::Custodian(cmd) => custodian::run(cmd).await,
            Command::Deposit(args) => deposit::run(args).await,
            Command::ForceTx(args) => force_tx::run(args).await,
            Command::Provenance(args) => provenance::provenance(args).await,
            Command::Verify(args) => provenance::verify(args).await,
            Command::SequencerKey(args) => sequencer_key::run(args),
            Command::Bench(cmd) => hemi_bench::run(cmd).await,
        }
    })
}
