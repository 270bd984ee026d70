//! Output for read commands: aligned tables for people, JSON for programs.

use serde::Serialize;

use super::CliResult;

/// A table printed with columns padded to their widest cell.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn print(&self) {
        let mut widths: Vec<usize> = self.header.iter().map(String::len).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
            println!("{}", cells.join("  ").trim_end());
        }
    }
}

/// Prints a value as pretty JSON.
pub fn print_json<T: Serialize>(value: &T) -> CliResult {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
