//! The frame: a fixed 32-byte header followed by a body, the unit every transport moves.
//!
//! This module owns the header's bytes and the checks made on untrusted input *before* any
//! memory is committed to a frame: magic, format version, kind, reserved bits, the header's
//! own crc, and the body length against the configured maximum. The body's crc is checked
//! by [`check_body`] once the body has arrived. What the body means is [`crate::codec`]'s
//! business; this module never looks inside it.
//!
//! **Boundary:** no I/O, no allocation, no unsafe code. docs/FORMATS.md ("Transport frame")
//! describes the same bytes.
#![forbid(unsafe_code)]

use crate::error::FrameError;

/// Size of the frame header in bytes. A multiple of 16, so that a body encoded right after
/// its header in one send buffer has the same alignment as when it is read into a buffer of
/// its own.
pub const FRAME_HEADER_BYTES: usize = 32;
const _: () = assert!(FRAME_HEADER_BYTES.is_multiple_of(16));

/// The first four bytes of every frame.
pub const FRAME_MAGIC: [u8; 4] = *b"FLTN";

/// The wire format version this build speaks (header layout, handshake and message schema).
pub const FORMAT_VERSION: u16 = 2;

/// The largest body any build accepts, whatever the configuration says (64 MiB).
pub const FRAME_BODY_BYTES_LIMIT: u32 = 64 << 20;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// An rkyv-archived [`crate::MessageBatch`]; `seq` numbers it on its connection.
    Data = 1,
    /// Receiver → sender: every data frame up to and including `seq` has arrived. No body.
    Ack = 2,
    /// Dialer → acceptor, first frame of a connection: [`crate::handshake::Hello`].
    Hello = 3,
    /// Acceptor → dialer: the hello was accepted; body is the acceptor's own hello.
    HelloAccept = 4,
    /// Acceptor → dialer: the hello was refused; body names why.
    HelloRefuse = 5,
}

impl FrameKind {
    fn from_byte(byte: u8) -> Option<FrameKind> {
        match byte {
            1 => Some(FrameKind::Data),
            2 => Some(FrameKind::Ack),
            3 => Some(FrameKind::Hello),
            4 => Some(FrameKind::HelloAccept),
            5 => Some(FrameKind::HelloRefuse),
            _ => None,
        }
    }
}

/// A decoded and checked frame header.
///
/// # Invariants
/// - `body_bytes <= FRAME_BODY_BYTES_LIMIT`, and no larger than the maximum it was decoded
///   against.
/// - An `Ack` frame has no body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the body is.
    pub kind: FrameKind,
    /// Length of the body that follows the header.
    pub body_bytes: u32,
    /// crc32 (IEEE, as crc32fast computes it) of the body.
    pub body_crc: u32,
    /// Data: this frame's position on its connection, counting from 1. Ack: the highest
    /// data frame received. Other kinds: zero.
    pub seq: u64,
}

impl FrameHeader {
    /// The header of a frame carrying `body`.
    pub fn for_body(kind: FrameKind, seq: u64, body: &[u8]) -> FrameHeader {
        let body_bytes = u32::try_from(body.len()).unwrap_or(u32::MAX);
        assert!(
            body_bytes <= FRAME_BODY_BYTES_LIMIT,
            "frame body of {} bytes",
            body.len()
        );
        FrameHeader {
            kind,
            body_bytes,
            body_crc: crc32fast::hash(body),
            seq,
        }
    }

    /// Writes the header's 32 bytes.
    pub fn encode(&self) -> [u8; FRAME_HEADER_BYTES] {
        let mut out = [0u8; FRAME_HEADER_BYTES];
        out[0..4].copy_from_slice(&FRAME_MAGIC);
        out[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[6] = self.kind as u8;
        out[7] = 0; // flags: none defined in versions 1 and 2
        out[8..12].copy_from_slice(&self.body_bytes.to_le_bytes());
        out[12..16].copy_from_slice(&self.body_crc.to_le_bytes());
        out[16..24].copy_from_slice(&self.seq.to_le_bytes());
        // 24..28 reserved, zero.
        let header_crc = crc32fast::hash(&out[0..28]);
        out[28..32].copy_from_slice(&header_crc.to_le_bytes());
        // Pair assertion: what we write must be what a receiver accepts.
        debug_assert_eq!(FrameHeader::decode(&out, FRAME_BODY_BYTES_LIMIT), Ok(*self));
        out
    }

    /// Checks and decodes a header read from an untrusted peer. `body_bytes_max` is the
    /// configured maximum body; the claimed length is refused before anything is allocated.
    pub fn decode(
        bytes: &[u8; FRAME_HEADER_BYTES],
        body_bytes_max: u32,
    ) -> Result<FrameHeader, FrameError> {
        let magic: [u8; 4] = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != FRAME_MAGIC {
            return Err(FrameError::BadMagic { found: magic });
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if version != FORMAT_VERSION {
            return Err(FrameError::UnsupportedVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let stored_crc = read_u32(bytes, 28);
        let computed_crc = crc32fast::hash(&bytes[0..28]);
        if stored_crc != computed_crc {
            return Err(FrameError::HeaderChecksum {
                stored: stored_crc,
                computed: computed_crc,
            });
        }
        let kind = FrameKind::from_byte(bytes[6]).ok_or(FrameError::UnknownKind(bytes[6]))?;
        if bytes[7] != 0 || bytes[24..28] != [0; 4] {
            return Err(FrameError::ReservedBitsSet);
        }
        let body_bytes = read_u32(bytes, 8);
        let limit = body_bytes_max.min(FRAME_BODY_BYTES_LIMIT);
        if body_bytes > limit {
            return Err(FrameError::TooLarge {
                body_bytes,
                max: limit,
            });
        }
        if kind == FrameKind::Ack && body_bytes != 0 {
            return Err(FrameError::UnexpectedBody { kind, body_bytes });
        }
        let seq = u64::from_le_bytes(bytes[16..24].try_into().expect("an 8-byte range"));
        Ok(FrameHeader {
            kind,
            body_bytes,
            body_crc: read_u32(bytes, 12),
            seq,
        })
    }

    /// The body length as an in-memory length.
    pub fn body_len(&self) -> usize {
        self.body_bytes as usize
    }
}

/// Checks a received body against its header's length and crc.
pub fn check_body(header: &FrameHeader, body: &[u8]) -> Result<(), FrameError> {
    assert_eq!(
        body.len(),
        header.body_len(),
        "caller read the wrong number of bytes"
    );
    let computed = crc32fast::hash(body);
    if computed != header.body_crc {
        return Err(FrameError::BodyChecksum {
            stored: header.body_crc,
            computed,
        });
    }
    Ok(())
}

fn read_u32(bytes: &[u8; FRAME_HEADER_BYTES], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_every_kind() {
        for kind in [
            FrameKind::Data,
            FrameKind::Hello,
            FrameKind::HelloAccept,
            FrameKind::HelloRefuse,
        ] {
            let header = FrameHeader::for_body(kind, 7, b"body bytes");
            assert_eq!(FrameHeader::decode(&header.encode(), 1024), Ok(header));
        }
        let ack = FrameHeader::for_body(FrameKind::Ack, u64::MAX, b"");
        assert_eq!(FrameHeader::decode(&ack.encode(), 0), Ok(ack));
    }

    #[test]
    fn every_header_field_is_checked() {
        let good = FrameHeader::for_body(FrameKind::Data, 1, &[0u8; 100]).encode();
        let with = |at: usize, byte: u8, fix_crc: bool| {
            let mut bytes = good;
            bytes[at] = byte;
            if fix_crc {
                let crc = crc32fast::hash(&bytes[0..28]);
                bytes[28..32].copy_from_slice(&crc.to_le_bytes());
            }
            FrameHeader::decode(&bytes, 1000)
        };
        assert!(matches!(
            with(0, b'X', true),
            Err(FrameError::BadMagic { .. })
        ));
        assert!(matches!(
            with(4, 9, true),
            Err(FrameError::UnsupportedVersion {
                found: 9,
                supported: FORMAT_VERSION
            })
        ));
        assert!(matches!(
            with(16, 2, false),
            Err(FrameError::HeaderChecksum { .. })
        ));
        assert_eq!(with(6, 0, true), Err(FrameError::UnknownKind(0)));
        assert_eq!(with(7, 1, true), Err(FrameError::ReservedBitsSet));
        assert_eq!(with(25, 1, true), Err(FrameError::ReservedBitsSet));
        assert_eq!(
            FrameHeader::decode(&good, 99),
            Err(FrameError::TooLarge {
                body_bytes: 100,
                max: 99
            })
        );
        let mut ack_with_body = FrameHeader::for_body(FrameKind::Ack, 1, b"").encode();
        ack_with_body[8] = 1;
        let crc = crc32fast::hash(&ack_with_body[0..28]);
        ack_with_body[28..32].copy_from_slice(&crc.to_le_bytes());
        assert!(matches!(
            FrameHeader::decode(&ack_with_body, 10),
            Err(FrameError::UnexpectedBody { .. })
        ));
    }

    #[test]
    fn body_checksum_is_checked() {
        let header = FrameHeader::for_body(FrameKind::Data, 1, b"abc");
        assert_eq!(check_body(&header, b"abc"), Ok(()));
        assert!(matches!(
            check_body(&header, b"abd"),
            Err(FrameError::BodyChecksum { .. })
        ));
    }
}
