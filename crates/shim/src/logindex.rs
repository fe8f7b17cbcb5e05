//! The capture-time index beside each log: one 16-byte record per chunk
//! the shim read from the agent's pipe, `(offset: u64, unix_nanos: i64)`
//! little-endian. A line's capture time is that of the chunk holding its
//! first byte. The log itself stays plain bytes, readable with `tail -f`.

use std::io::{self, Write};

/// Size of one index record in bytes.
pub const RECORD_LEN: usize = 16;

/// One index record: bytes from `offset` on were captured at `unix_nanos`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRecord {
    /// Offset in the log of the chunk's first byte.
    pub offset: u64,
    /// Capture time in nanoseconds since the Unix epoch.
    pub unix_nanos: i64,
}

impl IndexRecord {
    /// The record's bytes.
    pub fn encode(self) -> [u8; RECORD_LEN] {
        let mut bytes = [0u8; RECORD_LEN];
        bytes[..8].copy_from_slice(&self.offset.to_le_bytes());
        bytes[8..].copy_from_slice(&self.unix_nanos.to_le_bytes());
        bytes
    }

    /// Writes the record.
    pub fn write_to(self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.encode())
    }
}

/// Parses an index; a torn last record (a crash mid-write) is ignored.
pub fn decode(bytes: &[u8]) -> Vec<IndexRecord> {
    bytes
        .chunks_exact(RECORD_LEN)
        .map(|chunk| IndexRecord {
            offset: u64::from_le_bytes(chunk[..8].try_into().expect("8 bytes")),
            unix_nanos: i64::from_le_bytes(chunk[8..].try_into().expect("8 bytes")),
        })
        .collect()
}

/// The capture time of the byte at `offset`: that of the last record at or
/// before it (records are in offset order). `None` before the first record.
pub fn time_of(records: &[IndexRecord], offset: u64) -> Option<i64> {
    let after = records.partition_point(|record| record.offset <= offset);
    after.checked_sub(1).map(|i| records[i].unix_nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_look_up_by_offset() {
        let records = [
            IndexRecord {
                offset: 0,
                unix_nanos: 100,
            },
            IndexRecord {
                offset: 10,
                unix_nanos: 200,
            },
            IndexRecord {
                offset: 25,
                unix_nanos: 300,
            },
        ];
        let mut bytes = Vec::new();
        for record in records {
            record.write_to(&mut bytes).unwrap();
        }
        bytes.extend_from_slice(&[1, 2, 3]); // torn record
        let decoded = decode(&bytes);
        assert_eq!(decoded, records);
        assert_eq!(time_of(&decoded, 0), Some(100));
        assert_eq!(time_of(&decoded, 9), Some(100));
        assert_eq!(time_of(&decoded, 10), Some(200));
        assert_eq!(time_of(&decoded, 1000), Some(300));
        assert_eq!(time_of(&[], 5), None);
    }
}
