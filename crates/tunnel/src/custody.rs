//! The custodians' threshold key: a FROST (RFC 9591) k-of-n key over secp256k1 made by
//! distributed key generation, and the signing rounds that spend the vault's key path.
//!
//! frost-secp256k1-tr's DKG output is already BIP-341-tweaked with an empty script tree (so no
//! participant can smuggle a script path into the group key). The vault takes that output as
//! its internal key and adds its own script tree on top; a key-path spend then signs with the
//! tree's Merkle root as the tweak ([`Custody::sign_key_path`]).
//!
//! [`Custody::generate`] runs every participant's DKG rounds in one process: what the devnet
//! does for its 2-of-3 set. Each custodian's own [`Custodian`] holds its key share; its Debug
//! impl prints no secret.

use std::collections::BTreeMap;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
use bitcoin::taproot::TapNodeHash;
use bitcoin::XOnlyPublicKey;
use frost_secp256k1_tr as frost;
use rand_chacha::rand_core::{CryptoRng, RngCore, SeedableRng};

use crate::vault::{Vault, VaultError};

/// Why key generation or signing failed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustodyError {
    /// A FROST round failed (bad share, wrong participant set, …).
    #[error("FROST: {0}")]
    Frost(String),
    /// Fewer signers than the threshold, or one that is not a custodian.
    #[error("signers {signers:?}: need {threshold} distinct custodians of 1..={custodians}")]
    Signers {
        /// The indexes asked for.
        signers: Vec<u16>,
        /// k.
        threshold: u16,
        /// n.
        custodians: u16,
    },
    /// The vault's parameters.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

fn frost_err(e: frost::Error) -> CustodyError {
    CustodyError::Frost(e.to_string())
}

/// One custodian: its FROST key share and its own key for the multisig leaf.
pub struct Custodian {
    /// 1-based index (its FROST identifier).
    pub index: u16,
    key_package: frost::keys::KeyPackage,
    script_key: Keypair,
}

impl std::fmt::Debug for Custodian {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Custodian")
            .field("index", &self.index)
            .field("script_key", &self.script_key.x_only_public_key().0)
            .finish_non_exhaustive()
    }
}

impl Custodian {
    /// Its key for the vault's `sortedmulti_a` leaf.
    pub fn script_key(&self) -> XOnlyPublicKey {
        self.script_key.x_only_public_key().0
    }
}

/// A k-of-n custodian set with its group key.
pub struct Custody {
    /// k.
    pub threshold: u16,
    custodians: Vec<Custodian>,
    public: frost::keys::PublicKeyPackage,
    group_key: XOnlyPublicKey,
}

impl std::fmt::Debug for Custody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Custody")
            .field("threshold", &self.threshold)
            .field("custodians", &self.custodians)
            .field("group_key", &self.group_key)
            .finish()
    }
}

/// The x-only form of a FROST verifying key (its SEC1 encoding without the parity byte).
fn x_only(key: &frost::VerifyingKey) -> Result<XOnlyPublicKey, CustodyError> {
    let bytes = key.serialize().map_err(frost_err)?;
    XOnlyPublicKey::from_slice(bytes.get(1..).unwrap_or_default())
        .map_err(|e| CustodyError::Frost(format!("group key: {e}")))
}

impl Custody {
    /// Runs a `threshold`-of-`custodians` DKG among participants in this process, each with
    /// its own randomness from `rng`.
    ///
    /// # Errors
    /// [`CustodyError::Frost`] if a round fails (it does not with honest participants).
    pub fn generate<R: RngCore + CryptoRng>(
        custodians: u16,
        threshold: u16,
        rng: &mut R,
    ) -> Result<Self, CustodyError> {
        let ids: Vec<frost::Identifier> = (1..=custodians)
            .map(|i| frost::Identifier::try_from(i).map_err(frost_err))
            .collect::<Result<_, _>>()?;
        let mut round1_secrets = BTreeMap::new();
        let mut round1_public = BTreeMap::new();
        for id in &ids {
            let (secret, package) = frost::keys::dkg::part1(*id, custodians, threshold, &mut *rng)
                .map_err(frost_err)?;
            round1_secrets.insert(*id, secret);
            round1_public.insert(*id, package);
        }
        // Each participant sees every other's round-1 package, and gets its round-2 packages.
        let mut round2_secrets = BTreeMap::new();
        let mut inbox: BTreeMap<frost::Identifier, BTreeMap<frost::Identifier, _>> =
            BTreeMap::new();
        for (id, secret) in round1_secrets {
            let others: BTreeMap<_, _> = round1_public
                .iter()
                .filter(|(o, _)| **o != id)
                .map(|(o, p)| (*o, p.clone()))
                .collect();
            let (secret2, out) = frost::keys::dkg::part2(secret, &others).map_err(frost_err)?;
            round2_secrets.insert(id, (secret2, others));
            for (to, package) in out {
                inbox.entry(to).or_default().insert(id, package);
            }
        }
        let mut members = Vec::with_capacity(ids.len());
        let mut public = None;
        for (i, id) in ids.iter().enumerate() {
            let (secret2, others) = &round2_secrets[id];
            let received = inbox.remove(id).unwrap_or_default();
            let (key_package, public_package) =
                frost::keys::dkg::part3(secret2, others, &received).map_err(frost_err)?;
            if public.as_ref().is_some_and(|p| p != &public_package) {
                return Err(CustodyError::Frost(
                    "participants disagree on the group key".into(),
                ));
            }
            public = Some(public_package);
            let mut seed = [0u8; 32];
            rng.fill_bytes(&mut seed);
            let secret = SecretKey::from_slice(&seed)
                .map_err(|e| CustodyError::Frost(format!("script key: {e}")))?;
            members.push(Custodian {
                index: i as u16 + 1,
                key_package,
                script_key: Keypair::from_secret_key(&Secp256k1::signing_only(), &secret),
            });
        }
        let public = public.ok_or_else(|| CustodyError::Frost("no custodians".into()))?;
        Ok(Custody {
            threshold,
            custodians: members,
            group_key: x_only(public.verifying_key())?,
            public,
        })
    }

    /// The devnet's 2-of-3 set, the same every run (seeded from a fixed string), so the
    /// devnet's vault address does not change between runs — like its accounts.
    ///
    /// # Errors
    /// Only if FROST failed (a bug).
    pub fn devnet() -> Result<Self, CustodyError> {
        let seed = bitcoin::hashes::sha256::Hash::hash(b"hemi-rs devnet custodians v1");
        let mut rng = rand_chacha::ChaCha20Rng::from_seed(seed.to_byte_array());
        Self::generate(3, 2, &mut rng)
    }

    /// The custodians.
    pub fn custodians(&self) -> &[Custodian] {
        &self.custodians
    }

    /// The group key (the vault's internal key).
    pub fn group_key(&self) -> XOnlyPublicKey {
        self.group_key
    }

    /// The vault these custodians hold, with `recovery_key` able to spend after
    /// `recovery_after` blocks.
    ///
    /// # Errors
    /// [`VaultError`] for a zero timelock.
    pub fn vault(
        &self,
        recovery_key: XOnlyPublicKey,
        recovery_after: u16,
    ) -> Result<Vault, CustodyError> {
        Ok(Vault::new(
            self.group_key(),
            usize::from(self.threshold),
            self.custodians.iter().map(Custodian::script_key).collect(),
            recovery_key,
            recovery_after,
        )?)
    }

    /// A BIP-340 signature of `sighash` by the vault's output key (a key-path spend of a vault
    /// with script tree `merkle_root`), made by the custodians `signers` (1-based indexes, at
    /// least the threshold): FROST's two rounds and the aggregation.
    ///
    /// # Errors
    /// [`CustodyError::Signers`] for too few or unknown signers; [`CustodyError::Frost`] if a
    /// share does not verify.
    pub fn sign_key_path<R: RngCore + CryptoRng>(
        &self,
        sighash: [u8; 32],
        merkle_root: Option<TapNodeHash>,
        signers: &[u16],
        rng: &mut R,
    ) -> Result<bitcoin::secp256k1::schnorr::Signature, CustodyError> {
        let mut chosen: Vec<&Custodian> = Vec::new();
        for i in signers {
            match self.custodians.iter().find(|c| c.index == *i) {
                Some(c) if !chosen.iter().any(|x| x.index == *i) => chosen.push(c),
                _ => chosen.clear(),
            }
            if chosen.is_empty() {
                break;
            }
        }
        if chosen.len() < usize::from(self.threshold) {
            return Err(CustodyError::Signers {
                signers: signers.to_vec(),
                threshold: self.threshold,
                custodians: self.custodians.len() as u16,
            });
        }
        let root = merkle_root.map(|r| r.to_byte_array());
        let mut nonces = BTreeMap::new();
        let mut commitments = BTreeMap::new();
        for c in &chosen {
            let (n, cm) = frost::round1::commit(c.key_package.signing_share(), &mut *rng);
            nonces.insert(*c.key_package.identifier(), n);
            commitments.insert(*c.key_package.identifier(), cm);
        }
        let package = frost::SigningPackage::new(commitments, &sighash);
        let mut shares = BTreeMap::new();
        for c in &chosen {
            let id = *c.key_package.identifier();
            let share = frost::round2::sign_with_tweak(
                &package,
                &nonces[&id],
                &c.key_package,
                root.as_ref().map(|r| r.as_slice()),
            )
            .map_err(frost_err)?;
            shares.insert(id, share);
        }
        let sig = frost::aggregate_with_tweak(
            &package,
            &shares,
            &self.public,
            root.as_ref().map(|r| r.as_slice()),
        )
        .map_err(frost_err)?;
        let bytes = sig.serialize().map_err(frost_err)?;
        bitcoin::secp256k1::schnorr::Signature::from_slice(&bytes)
            .map_err(|e| CustodyError::Frost(format!("signature: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use bitcoin::secp256k1::Message;

    use super::*;

    fn recovery() -> XOnlyPublicKey {
        let secret = SecretKey::from_slice(&[7u8; 32]).expect("key");
        Keypair::from_secret_key(&Secp256k1::signing_only(), &secret)
            .x_only_public_key()
            .0
    }

    #[test]
    fn any_two_of_three_sign_for_the_vaults_output_key() {
        let custody = Custody::devnet().expect("dkg");
        let vault = custody.vault(recovery(), 144).expect("vault");
        let secp = Secp256k1::verification_only();
        let msg = [0x5a; 32];
        for signers in [[1u16, 2], [2, 3], [1, 3]] {
            let mut rng = rand_chacha::ChaCha20Rng::from_seed([signers[0] as u8; 32]);
            let sig = custody
                .sign_key_path(msg, vault.merkle_root(), &signers, &mut rng)
                .expect("sign");
            secp.verify_schnorr(&sig, &Message::from_digest(msg), &vault.output_key())
                .unwrap_or_else(|e| panic!("signers {signers:?}: {e}"));
        }
        let mut rng = rand_chacha::ChaCha20Rng::from_seed([1; 32]);
        let one = custody.sign_key_path(msg, vault.merkle_root(), &[2], &mut rng);
        assert!(matches!(one, Err(CustodyError::Signers { .. })), "{one:?}");
        let unknown = custody.sign_key_path(msg, vault.merkle_root(), &[1, 4], &mut rng);
        assert!(
            matches!(unknown, Err(CustodyError::Signers { .. })),
            "{unknown:?}"
        );
    }

    #[test]
    fn the_devnet_set_is_the_same_every_run_and_prints_no_secret() {
        let a = Custody::devnet().expect("dkg");
        let b = Custody::devnet().expect("dkg");
        assert_eq!(a.group_key(), b.group_key());
        assert_eq!(
            a.vault(recovery(), 144).expect("vault").script_pubkey(),
            b.vault(recovery(), 144).expect("vault").script_pubkey()
        );
        let printed = format!("{a:?}");
        assert!(printed.contains("Custodian"), "{printed}");
        assert!(
            !printed.to_lowercase().contains("signing_share"),
            "{printed}"
        );
    }

    #[test]
    fn the_multisig_leaf_is_sortedmulti_a() {
        let custody = Custody::devnet().expect("dkg");
        let vault = custody.vault(recovery(), 144).expect("vault");
        let asm = vault.multisig_leaf().to_asm_string();
        assert_eq!(asm.matches("OP_CHECKSIGADD").count(), 2, "{asm}");
        assert!(asm.ends_with("OP_PUSHNUM_2 OP_NUMEQUAL"), "{asm}");
        let keys = &vault.custodian_keys;
        assert!(keys.windows(2).all(|w| w[0].serialize() < w[1].serialize()));
        assert!(custody.vault(recovery(), 0).is_err());
    }
}
