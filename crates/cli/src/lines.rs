//! Bodies of JSON lines (logs, events), which arrive in pieces that end
//! anywhere.

/// Cuts a body that arrives in arbitrary pieces into NDJSON lines.
#[derive(Debug, Default)]
pub struct LineBuffer {
    /// The start of a line whose newline has not arrived yet.
    pending: Vec<u8>,
}

impl LineBuffer {
    /// Adds a piece; returns the lines it completed, blank ones left out.
    pub fn push(&mut self, data: &[u8]) -> Vec<Vec<u8>> {
        self.pending.extend_from_slice(data);
        let mut lines = Vec::new();
        let mut start = 0;
        // Lines are copied out as they are found, and what is left moved
        // to the front once: a piece of many lines costs no quadratic
        // shifting.
        while let Some(length) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let line = &self.pending[start..start + length];
            if !line.trim_ascii().is_empty() {
                lines.push(line.to_vec());
            }
            start += length + 1;
        }
        self.pending.drain(..start);
        lines
    }

    /// What is left when the body ends without a final newline.
    pub fn finish(self) -> Option<Vec<u8>> {
        (!self.pending.trim_ascii().is_empty()).then_some(self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_cut_wherever_the_pieces_end() {
        let mut buffer = LineBuffer::default();
        assert!(buffer.push(b"{\"a\":").is_empty());
        assert_eq!(buffer.push(b"1}\n\n{\"b\""), [b"{\"a\":1}".to_vec()]);
        assert_eq!(
            buffer.push(b":2}\n{\"c\":3}\r\n"),
            [b"{\"b\":2}".to_vec(), b"{\"c\":3}\r".to_vec()]
        );
        assert_eq!(buffer.push(b"{\"d\":4}"), Vec::<Vec<u8>>::new());
        assert_eq!(buffer.finish(), Some(b"{\"d\":4}".to_vec()));
        assert_eq!(LineBuffer::default().finish(), None);
    }
}
