//! `hemi`: the hemi-rs binary. `hemi devnet` runs every part in one process (like anvil);
//! `hemi node` follows an external Bitcoin Core.

mod bench;
mod bench_l2;
mod bench_pop;
mod config;
mod eth;
mod fork;
mod popm;
mod run;

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
    /// Benchmarks that run real processes side by side (results go in docs/BENCHMARKS.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    run::init_tracing();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Devnet(args) => run::devnet(args.resolve()?).await,
            Command::Node(args) => run::node(args.resolve()?).await,
            Command::Popm(args) => popm::run(args).await,
            Command::Bench(cmd) => bench::run(cmd).await,
        }
    })
}
