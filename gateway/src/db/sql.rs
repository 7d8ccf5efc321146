//! Numbered placeholders for statements whose length follows the data — multi-row
//! `VALUES` and `IN (…)` lists — so that no statement builds its numbering by hand. Only
//! placeholders are generated; every value is bound, never written into the SQL.

use std::fmt::Write;

/// `rows` copies of `row`, joined by `, `, each `?` in a copy replaced by the next numbered
/// placeholder from `$first` on. Placeholders written out in `row` (`$1`) are shared by
/// every row and left alone: `numbered_rows("(?, ?, $1)", 2, 2)` is
/// `($2, $3, $1), ($4, $5, $1)`.
pub fn numbered_rows(row: &str, rows: usize, first: usize) -> String {
    let mut out = String::with_capacity((row.len() + 8) * rows);
    let mut next = first;
    for i in 0..rows {
        if i > 0 {
            out.push_str(", ");
        }
        for c in row.chars() {
            if c == '?' {
                let _ = write!(out, "${next}");
                next += 1;
            } else {
                out.push(c);
            }
        }
    }
    out
}

/// `$first, …` for `n` values: the inside of an `IN (…)`.
pub fn numbered_list(first: usize, n: usize) -> String {
    numbered_rows("?", n, first)
}

/// For `n` (key, value) pairs bound in turn from `$1`: the `WHEN $1 THEN $2 WHEN $3 THEN
/// $4 …` of a `CASE key`, and the keys' list (`$1, $3, …`) for its `WHERE key IN (…)`.
pub fn numbered_case(n: usize) -> (String, String) {
    let mut when = String::new();
    for i in 0..n {
        let _ = write!(when, " WHEN ${} THEN ${}", 2 * i + 1, 2 * i + 2);
    }
    let keys = (0..n)
        .map(|i| format!("${}", 2 * i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    (when, keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_number_their_markers_in_order_and_leave_shared_placeholders() {
        assert_eq!(
            numbered_rows("(?, ?, $1)", 2, 2),
            "($2, $3, $1), ($4, $5, $1)"
        );
        assert_eq!(numbered_rows("(?, 'x', ?)", 1, 10), "($10, 'x', $11)");
        assert_eq!(numbered_rows("(?)", 0, 1), "");
        assert_eq!(numbered_list(4, 3), "$4, $5, $6");
        assert_eq!(numbered_list(1, 1), "$1");
        assert_eq!(
            numbered_case(2),
            (
                " WHEN $1 THEN $2 WHEN $3 THEN $4".to_owned(),
                "$1, $3".to_owned()
            )
        );
    }
}
