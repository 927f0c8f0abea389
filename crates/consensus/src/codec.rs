//! The wire (and write-ahead log) encoding of consensus messages: borsh, which Malachite's
//! types implement under their `borsh` feature. Decoding outside bytes never panics: borsh
//! refuses short, long or malformed input with an error.

use bytes::Bytes;
use malachitebft_app_channel::app::streaming::StreamMessage;
use malachitebft_app_channel::app::types::codec::{Codec, HasEncodedLen};
use malachitebft_app_channel::app::types::sync::{RawDecidedValue, Request, Response, Status};
use malachitebft_app_channel::app::types::{ProposedValue, SignedConsensusMsg};
use malachitebft_core_consensus::LivenessMsg;
use malachitebft_core_types::{
    ExtendedCommitCertificate, ExtendedCommitSignature, PolkaCertificate, Round, ValidatorProof,
};
use malachitebft_sync::ValueResponse;

use crate::ctx::{BlockId, Height, HemiContext, ProposalPart, Sig, ValidatorAddress};

/// Borsh encoding of every message Malachite sends or logs.
#[derive(Debug, Clone, Copy, Default)]
pub struct HemiCodec;

/// Largest message decoded: a sync answer carries decided blocks up to the engine's RPC limit
/// (80 MiB, above the largest block a proposal may stream, 64 MiB); proposal parts are at
/// most 1 MiB.
pub const MAX_MESSAGE: usize = 96 * 1024 * 1024;

fn too_big(n: usize) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("a consensus message of {n} bytes (at most {MAX_MESSAGE})"),
    )
}

macro_rules! borsh_codec {
    ($($t:ty),* $(,)?) => {$(
        impl Codec<$t> for HemiCodec {
            type Error = std::io::Error;

            fn decode(&self, bytes: Bytes) -> Result<$t, Self::Error> {
                if bytes.len() > MAX_MESSAGE {
                    return Err(too_big(bytes.len()));
                }
                borsh::from_slice(&bytes)
            }

            fn encode(&self, msg: &$t) -> Result<Bytes, Self::Error> {
                borsh::to_vec(msg).map(Bytes::from)
            }
        }
    )*};
}

borsh_codec!(
    ProposalPart,
    SignedConsensusMsg<HemiContext>,
    LivenessMsg<HemiContext>,
    StreamMessage<ProposalPart>,
    Status<HemiContext>,
    Request<HemiContext>,
    ProposedValue<HemiContext>,
    PolkaCertificate<HemiContext>,
);

/// A sync answer on the wire (Malachite gives its certificate type no borsh encoding):
/// decided blocks with their precommit signatures (vote extensions are not used).
#[derive(borsh::BorshSerialize, borsh::BorshDeserialize)]
struct WireResponse {
    start: Height,
    values: Vec<WireDecided>,
}

#[derive(borsh::BorshSerialize, borsh::BorshDeserialize)]
struct WireDecided {
    value: Vec<u8>,
    height: Height,
    round: Round,
    value_id: BlockId,
    signatures: Vec<(ValidatorAddress, Sig)>,
}

fn to_wire(msg: &Response<HemiContext>) -> WireResponse {
    let Response::ValueResponse(r) = msg;
    WireResponse {
        start: r.start_height,
        values: r
            .values
            .iter()
            .map(|v| WireDecided {
                value: v.value_bytes.to_vec(),
                height: v.certificate.height,
                round: v.certificate.round,
                value_id: v.certificate.value_id,
                signatures: v
                    .certificate
                    .commit_signatures
                    .iter()
                    .map(|s| (s.address, s.signature))
                    .collect(),
            })
            .collect(),
    }
}

impl Codec<Response<HemiContext>> for HemiCodec {
    type Error = std::io::Error;

    fn decode(&self, bytes: Bytes) -> Result<Response<HemiContext>, Self::Error> {
        if bytes.len() > MAX_MESSAGE {
            return Err(too_big(bytes.len()));
        }
        let w: WireResponse = borsh::from_slice(&bytes)?;
        let values = w
            .values
            .into_iter()
            .map(|d| {
                RawDecidedValue::new(
                    Bytes::from(d.value),
                    ExtendedCommitCertificate {
                        height: d.height,
                        round: d.round,
                        value_id: d.value_id,
                        commit_signatures: d
                            .signatures
                            .into_iter()
                            .map(|(a, s)| ExtendedCommitSignature::new(a, s, None))
                            .collect(),
                    },
                )
            })
            .collect();
        Ok(Response::ValueResponse(ValueResponse::new(w.start, values)))
    }

    fn encode(&self, msg: &Response<HemiContext>) -> Result<Bytes, Self::Error> {
        borsh::to_vec(&to_wire(msg)).map(Bytes::from)
    }
}

impl HasEncodedLen<Response<HemiContext>> for HemiCodec {
    fn encoded_len(&self, msg: &Response<HemiContext>) -> Result<usize, std::io::Error> {
        borsh::object_length(&to_wire(msg))
    }
}

impl Codec<ValidatorProof<HemiContext>> for HemiCodec {
    type Error = std::io::Error;

    fn decode(&self, bytes: Bytes) -> Result<ValidatorProof<HemiContext>, Self::Error> {
        if bytes.len() > MAX_MESSAGE {
            return Err(too_big(bytes.len()));
        }
        let (public_key, peer_id, sig): (Vec<u8>, Vec<u8>, Sig) = borsh::from_slice(&bytes)?;
        Ok(ValidatorProof::new(public_key, peer_id, sig))
    }

    fn encode(&self, p: &ValidatorProof<HemiContext>) -> Result<Bytes, Self::Error> {
        borsh::to_vec(&(&p.public_key, &p.peer_id, &p.signature)).map(Bytes::from)
    }
}

macro_rules! round_trip {
    ($bytes:expr, $($t:ty),* $(,)?) => {$(
        if let Ok(msg) = Codec::<$t>::decode(&HemiCodec, $bytes.clone()) {
            let again = Codec::<$t>::encode(&HemiCodec, &msg).expect("a decoded message encodes");
            let back = Codec::<$t>::decode(&HemiCodec, again).expect("its encoding decodes");
            assert_eq!(back, msg, "{} round-trips", stringify!($t));
        }
    )*};
}

/// Decodes `bytes` as every message the consensus network and log carry; what decodes is
/// encoded and decoded again. What the fuzz target `consensus_msg` runs.
///
/// # Panics
/// When a decoded message does not encode to bytes that decode to the same message (a codec
/// bug); never on malformed input.
pub fn check_round_trips(bytes: &[u8]) {
    let bytes = Bytes::copy_from_slice(bytes);
    round_trip!(
        bytes,
        ProposalPart,
        SignedConsensusMsg<HemiContext>,
        LivenessMsg<HemiContext>,
        StreamMessage<ProposalPart>,
        Status<HemiContext>,
        Request<HemiContext>,
        Response<HemiContext>,
        ProposedValue<HemiContext>,
        PolkaCertificate<HemiContext>,
        ValidatorProof<HemiContext>,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::{BlockId, BlockValue, Proposal, ValidatorAddress};

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let part = StreamMessage::new(
            malachitebft_app_channel::app::streaming::StreamId::new(Bytes::from_static(b"s")),
            3,
            malachitebft_engine::util::streaming::StreamContent::Data(ProposalPart::Data(vec![
                1, 2, 3,
            ])),
        );
        let bytes =
            Codec::<StreamMessage<ProposalPart>>::encode(&HemiCodec, &part).expect("encodes");
        check_round_trips(&bytes);
        let back =
            Codec::<StreamMessage<ProposalPart>>::decode(&HemiCodec, bytes).expect("decodes");
        assert_eq!(back, part);
        let proposal = Proposal {
            height: Height(9),
            round: Round::new(1),
            value: BlockValue(BlockId([7; 32])),
            pol_round: Round::Nil,
            proposer: ValidatorAddress([1; 20]),
        };
        let signed = SignedConsensusMsg::<HemiContext>::Proposal(
            malachitebft_core_types::SignedMessage::new(proposal, Sig([2; 65])),
        );
        let bytes =
            Codec::<SignedConsensusMsg<HemiContext>>::encode(&HemiCodec, &signed).expect("encodes");
        check_round_trips(&bytes);
        for garbage in [&b""[..], &[0xff; 7], &bytes[..bytes.len() - 1]] {
            check_round_trips(garbage);
            assert!(Codec::<SignedConsensusMsg<HemiContext>>::decode(
                &HemiCodec,
                Bytes::copy_from_slice(garbage)
            )
            .is_err());
        }
    }
}
