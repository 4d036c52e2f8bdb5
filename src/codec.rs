//! The protobuf codec of every assistd service: prost's, with smaller per-call buffers.
//!
//! tonic allocates an encode buffer of `buffer_size` for every call when it starts and grows
//! it in steps of that size. Its default, 8 KiB, is spent on each open stream for as long as
//! it stays open — 8 MiB for a thousand idle chat streams — while assistd's messages are
//! mostly far smaller (a streamed text delta is a few dozen bytes). 1 KiB steps keep small
//! messages in one allocation and grow for the rare large one.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial size and growth step of per-call buffers.
const BUFFER_SIZE: usize = 1024;
/// How much a server stream batches into one write when several messages are ready (tonic's
/// default).
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with [`BUFFER_SIZE`] buffers; named in `build.rs` as the generated code's
/// codec.
#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD))
    }
}
