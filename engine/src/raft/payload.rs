//! `Payload`: the bytes of one log entry. Small payloads live inline in the entry; larger
//! ones are a shared, reference-counted `Bytes`.
//!
//! An entry is cloned several times on its way (into the Ready to persist, into the message
//! to each follower, into the Ready to apply). For a `Bytes` each clone and drop is an atomic
//! reference-count operation, and the first clone of a `Bytes` made from a `Vec` allocates;
//! for the small entries multi-Raft users write most (tens of bytes), that cost more than
//! everything else the core does per entry. Inline payloads are copied instead: no
//! allocation, no atomics.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::Bytes;

/// Payloads up to this many bytes are stored inline (the enum stays as small as a `Bytes`).
pub const PAYLOAD_INLINE_BYTES_MAX: usize = 23;

/// The payload of a log entry: cheap to clone whatever its size, and read as `&[u8]`.
#[derive(Clone)]
pub struct Payload(Repr);

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        bytes: [u8; PAYLOAD_INLINE_BYTES_MAX],
    },
    Shared(Bytes),
}

const _: () = assert!(PAYLOAD_INLINE_BYTES_MAX <= u8::MAX as usize);
const _: () = assert!(
    size_of::<Payload>() <= 32,
    "a payload must stay as small as a Bytes"
);

impl Payload {
    /// The empty payload.
    #[must_use]
    pub const fn new() -> Payload {
        Payload(Repr::Inline {
            len: 0,
            bytes: [0; PAYLOAD_INLINE_BYTES_MAX],
        })
    }

    /// The payload as a `Bytes` (a copy for an inline payload, a reference otherwise), for
    /// drivers that hand it on to byte-buffer APIs.
    #[must_use]
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::Inline { .. } => Bytes::copy_from_slice(self),
            Repr::Shared(bytes) => bytes.clone(),
        }
    }
}

impl Default for Payload {
    fn default() -> Payload {
        Payload::new()
    }
}

impl Deref for Payload {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Shared(bytes) => bytes,
        }
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl From<&[u8]> for Payload {
    /// Copies `data`: inline if small, into one new shared buffer otherwise.
    fn from(data: &[u8]) -> Payload {
        match u8::try_from(data.len()) {
            Ok(len) if data.len() <= PAYLOAD_INLINE_BYTES_MAX => {
                let mut bytes = [0; PAYLOAD_INLINE_BYTES_MAX];
                bytes[..data.len()].copy_from_slice(data);
                Payload(Repr::Inline { len, bytes })
            }
            _ => Payload(Repr::Shared(Bytes::copy_from_slice(data))),
        }
    }
}

impl<const N: usize> From<&[u8; N]> for Payload {
    fn from(data: &[u8; N]) -> Payload {
        Payload::from(&data[..])
    }
}

impl From<Bytes> for Payload {
    /// Small payloads are copied inline (and the `Bytes` released); larger ones are kept
    /// without a copy, so a payload can stay in the buffer it arrived in.
    fn from(data: Bytes) -> Payload {
        if data.len() <= PAYLOAD_INLINE_BYTES_MAX {
            Payload::from(&data[..])
        } else {
            Payload(Repr::Shared(data))
        }
    }
}

impl From<Vec<u8>> for Payload {
    fn from(data: Vec<u8>) -> Payload {
        Payload::from(Bytes::from(data))
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Payload) -> bool {
        **self == **other
    }
}

impl Eq for Payload {}

impl Hash for Payload {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", Bytes::copy_from_slice(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_payloads_are_inline_and_large_ones_shared_without_a_copy() {
        let small = Payload::from(&b"hello"[..]);
        assert!(matches!(small.0, Repr::Inline { len: 5, .. }));
        assert_eq!(&*small, b"hello");
        let large = Bytes::from(vec![7u8; 100]);
        let pointer = large.as_ptr();
        let payload = Payload::from(large);
        assert_eq!(payload.as_ptr(), pointer, "no copy");
        assert_eq!(payload.len(), 100);
        let edge = Payload::from(&[1u8; PAYLOAD_INLINE_BYTES_MAX][..]);
        assert!(matches!(edge.0, Repr::Inline { .. }));
        let over = Payload::from(&[1u8; PAYLOAD_INLINE_BYTES_MAX + 1][..]);
        assert!(matches!(over.0, Repr::Shared(_)));
        assert_eq!(Payload::new().len(), 0);
        assert_eq!(
            Payload::from(Bytes::from_static(b"abc")),
            Payload::from(b"abc")
        );
    }
}
