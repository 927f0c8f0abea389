//! `hemi sequencer-key`: a validator key for the sequencer set, and the entry of the set's
//! validators file (`--validators`) that names it.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::json;

/// `hemi sequencer-key` options.
#[derive(Debug, Args)]
pub(crate) struct SequencerKeyArgs {
    /// The key file: read when it exists, else made (64 hex digits, readable by its owner only).
    #[arg(long)]
    pub out: PathBuf,
    /// Where this validator's consensus network listens, for the printed validators-file entry.
    #[arg(long, default_value = "/ip4/127.0.0.1/tcp/26656")]
    pub consensus_addr: String,
}

/// Makes or reads the key and prints `{"address", "publicKey", "consensusAddr"}`.
///
/// # Errors
/// The file cannot be read or written, or does not hold a key.
pub(crate) fn run(args: SequencerKeyArgs) -> anyhow::Result<()> {
    let secret = if args.out.exists() {
        crate::config::sequencer_key(&args.out.to_string_lossy())?
    } else {
        let key = bitcoin::secp256k1::SecretKey::new(&mut bitcoin::secp256k1::rand::thread_rng());
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options
            .open(&args.out)
            .with_context(|| format!("creating {}", args.out.display()))?;
        writeln!(f, "{}", hex::encode(key.secret_bytes()))?;
        f.sync_all()?;
        eprintln!("wrote a new sequencer key to {}", args.out.display());
        alloy_primitives::B256::from(key.secret_bytes())
    };
    args.consensus_addr
        .parse::<hemi_net::Multiaddr>()
        .with_context(|| {
            format!(
                "--consensus-addr {:?} is not a multiaddr",
                args.consensus_addr
            )
        })?;
    let public = hemi_consensus::PubKey::of_secret(secret).map_err(anyhow::Error::msg)?;
    let address = public.address().map_err(anyhow::Error::msg)?;
    println!(
        "{}",
        json!({
            "address": address,
            "publicKey": format!("0x{}", hex::encode(public.0)),
            "consensusAddr": args.consensus_addr,
        })
    );
    Ok(())
}
