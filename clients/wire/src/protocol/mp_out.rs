//! Writing MessagePack by hand, for the frames built around bytes they do not
//! copy (a fetch response's records, a produce request's batch). Each writer
//! picks the smallest encoding, as rmp_serde does, so that a hand-built frame
//! is byte for byte the serde encoding of the same message.

use bytes::{BufMut, BytesMut};

pub(super) fn put_map_len(out: &mut BytesMut, len: u8) {
    debug_assert!(len < 16);
    out.put_u8(0x80 | len);
}

pub(super) fn put_nil(out: &mut BytesMut) {
    out.put_u8(0xc0);
}

pub(super) fn put_str(out: &mut BytesMut, s: &str) {
    let len = s.len();
    match len {
        0..=31 => out.put_u8(0xa0 | len as u8),
        32..=0xff => {
            out.put_u8(0xd9);
            out.put_u8(len as u8);
        }
        0x100..=0xffff => {
            out.put_u8(0xda);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(0xdb);
            out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        }
    }
    out.put_slice(s.as_bytes());
}

pub(super) fn put_uint(out: &mut BytesMut, n: u64) {
    match n {
        0..=0x7f => out.put_u8(n as u8),
        0x80..=0xff => {
            out.put_u8(0xcc);
            out.put_u8(n as u8);
        }
        0x100..=0xffff => {
            out.put_u8(0xcd);
            out.put_u16(n as u16);
        }
        0x1_0000..=0xffff_ffff => {
            out.put_u8(0xce);
            out.put_u32(n as u32);
        }
        _ => {
            out.put_u8(0xcf);
            out.put_u64(n);
        }
    }
}

/// A signed integer: non-negative ones as unsigned, negative ones in the
/// smallest signed form.
pub(super) fn put_int(out: &mut BytesMut, n: i64) {
    match n {
        0.. => put_uint(out, n as u64),
        -32..=-1 => out.put_i8(n as i8),
        -128..=-33 => {
            out.put_u8(0xd0);
            out.put_i8(n as i8);
        }
        -32_768..=-129 => {
            out.put_u8(0xd1);
            out.put_i16(n as i16);
        }
        -2_147_483_648..=-32_769 => {
            out.put_u8(0xd2);
            out.put_i32(n as i32);
        }
        _ => {
            out.put_u8(0xd3);
            out.put_i64(n);
        }
    }
}

/// Bytes [`put_bin_len`] writes for `len`.
pub(super) fn bin_len_bytes(len: usize) -> usize {
    match len {
        0..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    }
}

/// A `bin` header; lengths of 4 GiB or more (which no frame can carry) are
/// written as `u32::MAX`.
pub(super) fn put_bin_len(out: &mut BytesMut, len: usize) {
    match len {
        0..=0xff => {
            out.put_u8(0xc4);
            out.put_u8(len as u8);
        }
        0x100..=0xffff => {
            out.put_u8(0xc5);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(0xc6);
            out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        }
    }
}
