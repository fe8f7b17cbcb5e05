//! Plain aligned columns, the way `docker ps` prints them: no borders, the
//! columns three spaces apart, the last one not padded.

/// Space between two columns.
const GAP: &str = "   ";

/// A table of text cells with a header row.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// The header (if any) first, then the rows.
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// A table without a header row (`key: value` listings).
    pub fn headless() -> Self {
        Table::default()
    }

    /// Adds a row; it should have one cell per header.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The table as lines of text, each ending in a newline.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (index, cell) in row.iter().enumerate() {
                if index > 0 {
                    line.push_str(GAP);
                }
                line.push_str(cell);
                if index + 1 < row.len() {
                    let padding = widths[index] - cell.chars().count();
                    line.extend(std::iter::repeat_n(' ', padding));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned_and_the_last_is_not_padded() {
        let mut table = Table::new(&["ID", "NAME", "COMMAND"]);
        table.push(vec!["abc".into(), "long-name".into(), "sleep 10".into()]);
        table.push(vec!["abcdef".into(), "x".into(), "true".into()]);
        assert_eq!(
            table.render(),
            "ID       NAME        COMMAND\n\
             abc      long-name   sleep 10\n\
             abcdef   x           true\n"
        );
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let mut table = Table::new(&["A", "B"]);
        table.push(vec!["é…".into(), "x".into()]);
        assert_eq!(table.render(), "A    B\né…   x\n");
    }

    #[test]
    fn an_empty_table_is_its_header() {
        assert_eq!(Table::new(&["ID", "NAME"]).render(), "ID   NAME\n");
    }

    #[test]
    fn a_headless_table_is_its_rows() {
        assert_eq!(Table::headless().render(), "");
        let mut table = Table::headless();
        table.push(vec!["key:".into(), "value".into()]);
        table.push(vec!["longer_key:".into(), "v".into()]);
        assert_eq!(table.render(), "key:          value\nlonger_key:   v\n");
    }

    #[test]
    fn empty_last_cells_leave_no_trailing_spaces() {
        let mut table = Table::new(&["A", "B"]);
        table.push(vec!["long value".into(), String::new()]);
        assert_eq!(table.render(), "A            B\nlong value\n");
    }
}
