//! Capped multi-member gunzip. flate2's `GzDecoder` stops after the first
//! member (Vector #7061); `MultiGzDecoder` reads them all.

use flate2::read::MultiGzDecoder;
use std::io::Read;

pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&GZIP_MAGIC)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GunzipError {
    #[error("decompressed size exceeds {cap} bytes")]
    TooLarge { cap: usize },
    #[error("corrupt gzip stream: {0}")]
    Corrupt(String),
}

/// The uncompressed size a gzip stream announces in its trailer (mod 2^32,
/// last member only): a sizing hint, never trusted as a bound.
pub fn isize_hint(gz: &[u8]) -> usize {
    match gz.len().checked_sub(4).map(|i| &gz[i..]) {
        Some(t) if gz.len() >= 18 => u32::from_le_bytes([t[0], t[1], t[2], t[3]]) as usize,
        _ => 0,
    }
}

/// Decompresses every member of `input` into `out` (cleared first), reading at
/// most `cap` bytes of output: a decompression bomb costs `cap`, never more.
pub fn gunzip_capped(input: &[u8], cap: usize, out: &mut Vec<u8>) -> Result<(), GunzipError> {
    out.clear();
    // The trailer's size when it looks plausible (CloudWatch Logs payloads
    // inflate about 5-15x), else a guess; never the cap. One right-sized
    // allocation instead of a doubling series saves the copies and the
    // page faults of the discarded buffers.
    let hint = isize_hint(input);
    let guess = if hint >= input.len() / 2 && hint <= input.len().saturating_mul(1032) {
        hint.saturating_add(64)
    } else {
        input.len().saturating_mul(8)
    };
    out.reserve(guess.min(cap.saturating_add(1)).min(64 << 20));
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    let mut reader = MultiGzDecoder::new(input).take(limit);
    match reader.read_to_end(out) {
        Ok(_) if out.len() > cap => Err(GunzipError::TooLarge { cap }),
        Ok(_) => Ok(()),
        Err(e) => Err(GunzipError::Corrupt(e.to_string())),
    }
}

/// One gzip member of `data`, for unit tests.
#[cfg(test)]
pub(crate) fn gz(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_member() {
        let mut two = gz(b"hello ");
        two.extend(gz(b"world"));
        let mut out = Vec::new();
        gunzip_capped(&two, 100, &mut out).unwrap();
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn bomb_is_capped() {
        let bomb = gz(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 20_000);
        let mut out = Vec::new();
        assert_eq!(
            gunzip_capped(&bomb, 1 << 20, &mut out),
            Err(GunzipError::TooLarge { cap: 1 << 20 })
        );
        assert!(out.len() <= (1 << 20) + 1);
    }

    #[test]
    fn exact_cap_is_allowed() {
        let mut out = Vec::new();
        gunzip_capped(&gz(b"12345"), 5, &mut out).unwrap();
        assert_eq!(out, b"12345");
    }

    #[test]
    fn corrupt_is_an_error() {
        let mut data = gz(b"some text that is long enough");
        let n = data.len();
        data.truncate(n - 6);
        let mut out = Vec::new();
        assert!(matches!(
            gunzip_capped(&data, 100, &mut out),
            Err(GunzipError::Corrupt(_))
        ));
        assert!(matches!(
            gunzip_capped(&[0x1f, 0x8b, 0, 0], 100, &mut out),
            Err(GunzipError::Corrupt(_))
        ));
    }
}
