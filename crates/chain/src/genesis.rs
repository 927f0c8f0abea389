//! Chain spec and the devnet's standard accounts.

use std::collections::BTreeMap;
use std::str::FromStr;

use alloy_primitives::{keccak256, Address, U256};
use bitcoin::bip32::{DerivationPath, Xpriv};
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};

/// The standard test mnemonic (anvil, hardhat, foundry).
pub const DEV_MNEMONIC: &str = "test test test test test test test test test test test junk";

/// Errors building a genesis.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    /// The mnemonic is not valid BIP39 English.
    #[error("invalid mnemonic: {0}")]
    Mnemonic(String),
    /// Key derivation failed.
    #[error("key derivation: {0}")]
    Derivation(String),
    /// The chain spec file is not valid.
    #[error("chain spec: {0}")]
    Spec(String),
}

/// One funded development account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevAccount {
    /// Its Ethereum address.
    pub address: Address,
    /// Its secp256k1 secret key.
    pub secret: [u8; 32],
}

/// The Ethereum address of a secp256k1 key: the last 20 bytes of keccak256 of the
/// uncompressed public key without its 0x04 prefix.
pub fn eth_address(secret: &SecretKey) -> Address {
    let secp = Secp256k1::signing_only();
    let pk = PublicKey::from_secret_key(&secp, secret).serialize_uncompressed();
    Address::from_slice(&keccak256(&pk[1..])[12..])
}

/// The first `count` accounts of `mnemonic` on Ethereum's path m/44'/60'/0'/0/i (empty
/// passphrase), as anvil and hardhat derive them.
///
/// # Errors
/// [`GenesisError::Mnemonic`] for an invalid phrase; derivation errors.
pub fn dev_accounts(mnemonic: &str, count: u32) -> Result<Vec<DevAccount>, GenesisError> {
    let m = bip39::Mnemonic::parse_in(bip39::Language::English, mnemonic)
        .map_err(|e| GenesisError::Mnemonic(e.to_string()))?;
    let seed = m.to_seed("");
    let secp = Secp256k1::new();
    let master = Xpriv::new_master(bitcoin::Network::Bitcoin, &seed)
        .map_err(|e| GenesisError::Derivation(e.to_string()))?;
    (0..count)
        .map(|i| {
            let path = DerivationPath::from_str(&format!("m/44'/60'/0'/0/{i}"))
                .map_err(|e| GenesisError::Derivation(e.to_string()))?;
            let child = master
                .derive_priv(&secp, &path)
                .map_err(|e| GenesisError::Derivation(e.to_string()))?;
            Ok(DevAccount {
                address: eth_address(&child.private_key),
                secret: child.private_key.secret_bytes(),
            })
        })
        .collect()
}

/// A chain spec: what genesis looks like (geth-style field names).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainSpec {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Block gas limit.
    pub gas_limit: u64,
    /// Genesis timestamp.
    pub timestamp: u64,
    /// Initial EIP-1559 base fee, wei.
    pub base_fee_per_gas: u64,
    /// Funded accounts: address → balance in wei.
    pub alloc: BTreeMap<Address, U256>,
    /// Every block whose number is a multiple of this is a keystone (Hemi: 25).
    #[serde(default = "default_keystone_interval")]
    pub keystone_interval: u64,
    /// Block `k + pop_payout_delay` pays the PoP publications of keystone `k` (0: no PoP
    /// rewards).
    #[serde(default = "default_pop_payout_delay")]
    pub pop_payout_delay: u64,
    /// Wei split among the publications of each keystone.
    #[serde(default = "default_pop_reward")]
    pub pop_reward: U256,
    /// The BTC tunnel, if this chain has one: when it starts and its vault and fees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<crate::tunnel::TunnelSpec>,
    /// Forced inclusion through Bitcoin ([`crate::forced`]); `None`: no such rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forced_inclusion: Option<crate::forced::ForcedInclusionParams>,
    /// Whether blocks may carry the devnet's direct state changes ([`crate::dev`]): a regtest
    /// devnet and its followers only.
    #[serde(default)]
    pub dev_state: bool,
    /// The sequencer set, when a validator set orders the chain by BFT consensus: the
    /// validators' addresses (equal voting power). Blocks then carry a commit certificate of
    /// more than two thirds of them ([`crate::certificate`]); empty: one sequencer key seals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validators: Vec<Address>,
}

fn default_keystone_interval() -> u64 {
    25
}

fn default_pop_payout_delay() -> u64 {
    200
}

fn default_pop_reward() -> U256 {
    U256::from(10u64).pow(U256::from(18u64))
}

impl ChainSpec {
    /// The devnet: chain id 31337 (what anvil uses, so wallets' dev presets work), 30M gas,
    /// the ten standard accounts with 10,000 ETH each, as anvil funds them.
    ///
    /// # Errors
    /// Only if the built-in mnemonic failed to derive (a bug).
    pub fn devnet() -> Result<Self, GenesisError> {
        let ether = U256::from(10u64).pow(U256::from(18u64));
        let alloc = dev_accounts(DEV_MNEMONIC, 10)?
            .into_iter()
            .map(|a| (a.address, U256::from(10_000u64) * ether))
            .collect();
        Ok(ChainSpec {
            chain_id: 31337,
            gas_limit: 30_000_000,
            timestamp: 0,
            base_fee_per_gas: 1_000_000_000,
            alloc,
            keystone_interval: 5,
            pop_payout_delay: default_pop_payout_delay(),
            pop_reward: default_pop_reward(),
            tunnel: None,
            forced_inclusion: None,
            dev_state: false,
            validators: Vec::new(),
        })
    }

    /// Reads a chain spec from JSON.
    ///
    /// # Errors
    /// [`GenesisError::Spec`] naming what is wrong.
    pub fn from_json(text: &str) -> Result<Self, GenesisError> {
        serde_json::from_str(text).map_err(|e| GenesisError::Spec(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The accounts anvil prints for the standard mnemonic (anvil's own banner).
    const ANVIL: [(&str, &str); 3] = [
        (
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
            "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        ),
        (
            "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
        ),
        (
            "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
            "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
        ),
    ];

    #[test]
    fn the_standard_mnemonic_gives_anvils_accounts() {
        let accounts = dev_accounts(DEV_MNEMONIC, 10).expect("derive");
        assert_eq!(accounts.len(), 10);
        for (i, (addr, secret)) in ANVIL.iter().enumerate() {
            assert_eq!(accounts[i].address.to_checksum(None), *addr, "account {i}");
            assert_eq!(hex_lower(&accounts[i].secret), *secret, "account {i}");
        }
        assert_eq!(
            accounts[9].address.to_checksum(None),
            "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"
        );
    }

    #[test]
    fn a_bad_mnemonic_is_a_clear_error() {
        let e = dev_accounts("test test test", 1).expect_err("invalid");
        assert!(e.to_string().contains("invalid mnemonic"), "{e}");
    }

    #[test]
    fn the_devnet_spec_round_trips_through_json() {
        let spec = ChainSpec::devnet().expect("devnet");
        assert_eq!(spec.alloc.len(), 10);
        let json = serde_json::to_string(&spec).expect("json");
        assert_eq!(ChainSpec::from_json(&json).expect("parse"), spec);
        assert!(ChainSpec::from_json("{\"chainId\": 1}").is_err());
    }

    fn hex_lower(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
