//! Recipients from CSV text (RFC 4180: quoted fields, doubled quotes, CRLF or LF): a header
//! row names the columns; `phone`, `email`, `name` and `tz` fill the recipient, any other
//! column becomes a template variable of that name.

use crate::spec::Recipient;

/// Largest CSV accepted, bytes.
pub const MAX_CSV: usize = 16 * 1024 * 1024;

/// Parses the rows; errors name the line.
pub fn recipients(text: &str) -> Result<Vec<Recipient>, String> {
    if text.len() > MAX_CSV {
        return Err(format!("larger than {MAX_CSV} bytes"));
    }
    let rows = records(text)?;
    let mut rows = rows
        .into_iter()
        .filter(|(_, r)| !(r.len() == 1 && r[0].is_empty()));
    let Some((_, header)) = rows.next() else {
        return Err("no header row".into());
    };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_lowercase()).collect();
    if !header.iter().any(|h| h == "phone" || h == "email") {
        return Err("the header names neither `phone` nor `email`".into());
    }
    let mut out = Vec::new();
    for (line, row) in rows {
        if row.len() != header.len() {
            return Err(format!(
                "line {line}: {} fields, the header has {}",
                row.len(),
                header.len()
            ));
        }
        let mut r = Recipient::default();
        for (h, v) in header.iter().zip(row) {
            let v = v.trim().to_string();
            if v.is_empty() {
                continue;
            }
            match h.as_str() {
                "phone" => r.phone = Some(v),
                "email" => r.email = Some(v),
                "name" => r.name = Some(v),
                "tz" | "timezone" => r.tz = Some(v),
                other => {
                    r.vars.insert(other.to_string(), v);
                }
            }
        }
        out.push(r);
    }
    Ok(out)
}

/// Splits into records of fields, each with its first line number.
fn records(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let mut out = Vec::new();
    let mut field = String::new();
    let mut row = Vec::new();
    let mut line = 1;
    let mut start = 1;
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                out.push((start, std::mem::take(&mut row)));
                line += 1;
                start = line;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(format!("line {start}: a quoted field is not closed"));
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        out.push((start, row));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_columns_quotes_and_variables() {
        let text = "phone,email,name,tz,site\r\n+15550001,a@x.org,\"Doe, Jane\",America/Chicago,\"Elm \"\"St\"\"\"\n+15550002,,Bob,,\n";
        let r = recipients(text).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].name.as_deref(), Some("Doe, Jane"));
        assert_eq!(r[0].vars["site"], "Elm \"St\"");
        assert_eq!(r[0].tz.as_deref(), Some("America/Chicago"));
        assert_eq!(r[1].email, None);
        assert!(r[1].vars.is_empty());
    }

    #[test]
    fn errors_name_the_line() {
        assert!(recipients("name\nBob\n").unwrap_err().contains("neither"));
        assert_eq!(
            recipients("phone,name\n+1555,Bob\n+1556\n").unwrap_err(),
            "line 3: 1 fields, the header has 2"
        );
        assert!(recipients("phone\n\"+1555\n")
            .unwrap_err()
            .contains("not closed"));
        assert!(recipients("").is_err());
    }
}
