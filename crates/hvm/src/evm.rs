//! Wiring the Bitcoin precompiles into revm: a [`PrecompileProvider`] that serves 0x40–0x49
//! from a pinned [`BitcoinView`] and hands every other address to revm's Ethereum precompiles.

use std::sync::Arc;

use hemi_btc_view::{BitcoinView, BlockRef};
use revm::context::Cfg;
use revm::context_interface::ContextTr;
use revm::handler::{precompile_output_to_interpreter_result, EthPrecompiles, PrecompileProvider};
use revm::interpreter::{CallInputs, InterpreterResult};
use revm::precompile::{PrecompileHalt, PrecompileOutput};
use revm::primitives::hardfork::SpecId;
use revm::primitives::{Address, AddressSet, Bytes};

use crate::precompiles::{self, BitcoinContext, PrecompileCall, HVM_PRECOMPILE_ADDRESSES};

/// The Bitcoin state an L2 block executes against: the view and the block it pinned.
#[derive(Clone)]
pub struct BitcoinPin {
    /// Bitcoin as indexed by our client.
    pub view: Arc<dyn BitcoinView>,
    /// The Bitcoin block named by the L2 block's Bitcoin-attributes transaction.
    pub pinned: BlockRef,
    /// Network, for decoding addresses.
    pub network: bitcoin::Network,
}

impl std::fmt::Debug for BitcoinPin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BitcoinPin")
            .field("pinned", &self.pinned)
            .field("network", &self.network)
            .finish()
    }
}

/// The 20-byte address of hVM precompile `n` (0x40–0x49): `n` left-padded with zeros.
pub fn hvm_address(n: u8) -> Address {
    let mut a = [0u8; 20];
    a[19] = n;
    Address::from(a)
}

/// If `address` is an hVM precompile, its one-byte number.
fn hvm_number(address: &Address) -> Option<u8> {
    let b = address.as_slice();
    (b[..19].iter().all(|x| *x == 0) && HVM_PRECOMPILE_ADDRESSES.contains(&b[19])).then_some(b[19])
}

/// revm precompiles: Ethereum's for the active spec plus Hemi's Bitcoin precompiles.
#[derive(Debug)]
pub struct HvmPrecompiles {
    eth: EthPrecompiles,
    warm: AddressSet,
    pin: BitcoinPin,
}

impl HvmPrecompiles {
    /// Precompiles for `spec`, answering Bitcoin queries as of `pin`.
    pub fn new(spec: SpecId, pin: BitcoinPin) -> Self {
        let eth = EthPrecompiles::new(spec);
        let warm = Self::warm_set(&eth);
        HvmPrecompiles { eth, warm, pin }
    }

    /// Repins to another Bitcoin block (the next L2 block's).
    pub fn set_pin(&mut self, pin: BitcoinPin) {
        self.pin = pin;
    }

    /// Ethereum's precompiles plus 0x40–0x49, all warm (EIP-2929). Hemi's op-geth leaves the
    /// standard ones cold in one fork window (docs/HVM_PRECOMPILES.md §1.1, unconfirmed); we
    /// follow upstream Ethereum.
    fn warm_set(eth: &EthPrecompiles) -> AddressSet {
        let mut warm = AddressSet::default();
        warm.clone_from(eth.warm_addresses());
        for n in HVM_PRECOMPILE_ADDRESSES {
            warm.insert(hvm_address(n));
        }
        warm
    }
}

impl<CTX> PrecompileProvider<CTX> for HvmPrecompiles
where
    CTX: ContextTr<Cfg: Cfg<Spec = SpecId>>,
{
    type Output = InterpreterResult;

    fn set_spec(&mut self, spec: <CTX::Cfg as Cfg>::Spec) -> bool {
        let changed = <EthPrecompiles as PrecompileProvider<CTX>>::set_spec(&mut self.eth, spec);
        self.warm = Self::warm_set(&self.eth);
        changed
    }

    fn run(
        &mut self,
        context: &mut CTX,
        inputs: &CallInputs,
    ) -> Result<Option<Self::Output>, String> {
        let Some(n) = hvm_number(&inputs.bytecode_address) else {
            return <EthPrecompiles as PrecompileProvider<CTX>>::run(
                &mut self.eth,
                context,
                inputs,
            );
        };
        let gas = precompiles::gas_cost(n).unwrap_or(u64::MAX);
        if gas > inputs.gas_limit {
            let out = PrecompileOutput::halt(PrecompileHalt::OutOfGas, inputs.reservoir);
            return Ok(Some(precompile_output_to_interpreter_result(
                out,
                inputs.gas_limit,
            )));
        }
        let input = inputs.input.bytes(context);
        let ctx = BitcoinContext {
            view: self.pin.view.as_ref(),
            pinned: self.pin.pinned,
            network: self.pin.network,
        };
        let out = match precompiles::call(n, &input, &ctx) {
            PrecompileCall::Output(bytes) => {
                PrecompileOutput::new(gas, Bytes::from(bytes), inputs.reservoir)
            }
            // Hemi's "raw error": the CALL fails and burns all the gas it was given.
            PrecompileCall::Fail(reason) => {
                PrecompileOutput::halt(PrecompileHalt::other(reason), inputs.reservoir)
            }
        };
        Ok(Some(precompile_output_to_interpreter_result(
            out,
            inputs.gas_limit,
        )))
    }

    fn warm_addresses(&self) -> &AddressSet {
        &self.warm
    }

    fn contains(&self, address: &Address) -> bool {
        self.warm.contains(address)
    }
}
