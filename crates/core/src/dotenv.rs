//! dotenv files as gangplank reads them: sync-secrets' values-file, and the `.env` that deploy-remote uploads
//! and verify-image starts the stack with, whose values are masked before anything is printed.

use crate::actions::register_mask;

/// Where and why a file stops parsing (never its content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub reason: &'static str,
}

/// Parse a dotenv file literally (docs/secrets-manifest.md, "Values"): `KEY=value` lines, `#` comments, an
/// optional `export ` prefix, single quotes taken as written, double quotes with `\\ \" \n \r \t \$` escapes.
/// Nothing is expanded: a password with `$HOME` or `${X}` in it is that password, and reading the file never
/// depends on the environment of the runner (dotenvy expanded both). Returns the pairs read before the first
/// error, and that error.
pub fn parse(text: &str) -> (Vec<(String, String)>, Option<ParseError>) {
    let mut out = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut line = 1;
    let err = |line: usize, reason: &'static str| Some(ParseError { line, reason });
    while i < chars.len() {
        // Leading white space, blank lines and comment lines.
        while i < chars.len() && matches!(chars[i], ' ' | '\t' | '\r') {
            i += 1;
        }
        if i >= chars.len() {
            break;
        }
        if chars[i] == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if chars[i] == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        let start_line = line;
        let rest: String = chars[i..chars.len().min(i + 7)].iter().collect();
        if rest.starts_with("export") && rest[6..].starts_with([' ', '\t']) {
            i += 6;
            while i < chars.len() && matches!(chars[i], ' ' | '\t') {
                i += 1;
            }
        }
        let key_start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '_' | '.')) {
            i += 1;
        }
        let key: String = chars[key_start..i].iter().collect();
        if key.is_empty() || key.starts_with(|c: char| c.is_ascii_digit()) {
            return (out, err(start_line, "a line must start with a name followed by `=`"));
        }
        while i < chars.len() && matches!(chars[i], ' ' | '\t') {
            i += 1;
        }
        if i >= chars.len() || chars[i] != '=' {
            return (out, err(start_line, "a name must be followed by `=`"));
        }
        i += 1;
        while i < chars.len() && matches!(chars[i], ' ' | '\t') {
            i += 1;
        }
        let mut value = String::new();
        match chars.get(i) {
            Some('\'') => {
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return (out, err(start_line, "a single quote is not closed")),
                        Some('\'') => break,
                        Some(c) => {
                            if *c == '\n' {
                                line += 1;
                            }
                            value.push(*c);
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            Some('"') => {
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return (out, err(start_line, "a double quote is not closed")),
                        Some('"') => break,
                        Some('\\') => {
                            i += 1;
                            match chars.get(i) {
                                Some('n') => value.push('\n'),
                                Some('r') => value.push('\r'),
                                Some('t') => value.push('\t'),
                                Some(c @ ('\\' | '"' | '$')) => value.push(*c),
                                // Any other backslash is kept as written, as compose reads it.
                                Some(c) => {
                                    if *c == '\n' {
                                        line += 1;
                                    }
                                    value.push('\\');
                                    value.push(*c);
                                }
                                None => return (out, err(start_line, "a double quote is not closed")),
                            }
                        }
                        Some(c) => {
                            if *c == '\n' {
                                line += 1;
                            }
                            value.push(*c);
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            _ => {
                // Unquoted: to the end of the line, a ` #` starts a comment.
                let start = i;
                while i < chars.len() && chars[i] != '\n' {
                    if chars[i] == '#' && i > start && matches!(chars[i - 1], ' ' | '\t') {
                        break;
                    }
                    i += 1;
                }
                value = chars[start..i].iter().collect::<String>().trim_end().to_string();
            }
        }
        // After the value: white space, then an optional comment, then the end of the line.
        while i < chars.len() && matches!(chars[i], ' ' | '\t' | '\r') {
            i += 1;
        }
        match chars.get(i) {
            None | Some('\n') => {}
            Some('#') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            Some(_) => return (out, err(line, "text after a closing quote")),
        }
        out.push((key, value));
    }
    (out, None)
}

pub use crate::actions::maskable;

/// The strings to mask for a `.env`: each line of each parsed value that is [`maskable`]. A file that
/// stops parsing is still masked to its end: from the failing line on, the text after `=` of each line
/// (quotes trimmed) and every other line whole, since compose may read what we cannot.
pub fn mask_values(text: &str) -> Vec<String> {
    let (pairs, err) = parse(text);
    let mut out: Vec<String> = pairs.iter().flat_map(|(_, v)| v.lines()).map(|l| l.trim().to_string()).collect();
    if let Some(e) = err {
        for line in text.lines().skip(e.line - 1).map(str::trim).filter(|l| !l.starts_with('#')) {
            let value = line.split_once('=').map_or(line, |(_, v)| v).trim().trim_matches(['"', '\'']);
            out.extend([value.to_string(), line.to_string()]);
        }
    }
    out.retain(|l| maskable(l));
    out.dedup();
    out
}

/// Register every value of a `.env` for masking ([`mask_values`]). Called before a step prints anything.
pub fn register_masks(text: &str) {
    for v in mask_values(text) {
        register_mask(&v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values_of(text: &str) -> Vec<(String, String)> {
        let (pairs, err) = parse(text);
        assert_eq!(err, None, "{text}");
        pairs
    }

    #[test]
    fn files_are_read_literally() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("A_KEY=\"pa${HOME}x\"\n", &[("A_KEY", "pa${HOME}x")]),
            ("A=$HOME\nB='$HOME ${X}'\nC=\"\\$HOME\"\n", &[("A", "$HOME"), ("B", "$HOME ${X}"), ("C", "$HOME")]),
            ("# comment\n\n  export K=v # trailing\n", &[("K", "v")]),
            ("K=a#b\nL = spaced value  \n", &[("K", "a#b"), ("L", "spaced value")]),
            ("E=\nF=\"\"\nG=''\n", &[("E", ""), ("F", ""), ("G", "")]),
            (r#"D="a\"b\\c\nd\te\x""#, &[("D", "a\"b\\c\nd\te\\x")]),
            ("M='line1\nline2 = y'\nN=2\n", &[("M", "line1\nline2 = y"), ("N", "2")]),
            ("Q=\"multi\nline\"  # c\r\nR=r\r\n", &[("Q", "multi\nline"), ("R", "r")]),
            ("exported=1\n", &[("exported", "1")]),
        ];
        for (text, want) in cases {
            let want: Vec<(String, String)> = want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(values_of(text), want, "{text}");
        }
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line) in [
            ("A=1\nB=\"k9-unclosed\n", 2),
            ("A=1\n\nnot a pair\n", 3),
            ("A='x'y\n", 1),
            ("1A=x\n", 1),
            ("C='k9-open\nstill\n", 1),
        ] {
            let (_, err) = parse(text);
            assert_eq!(err.map(|e| e.line), Some(line), "{text}");
        }
    }

    #[test]
    fn every_value_is_masked_line_by_line_but_booleans_and_tiny_values() {
        let text = "# c\nTOK=abc # prod\nLONG=\"first line\nsecond line\n  x\"\nDEBUG=true\nN=1\nPORT=8080\n";
        assert_eq!(mask_values(text), ["abc", "first line", "second line", "8080"]);
        // After a line we cannot parse, the rest of the file is still masked.
        let broken = "A=good-value\nB=\"never closed\nline two of it\nC=after\n";
        let m = mask_values(broken);
        for want in ["good-value", "never closed", "line two of it", "after", "C=after"] {
            assert!(m.iter().any(|v| v == want), "{want} not in {m:?}");
        }
        assert!(maskable("abc") && maskable("0000") && !maskable("ab") && !maskable(" On ") && !maskable("FALSE"));
    }
}
