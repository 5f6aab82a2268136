//! Helpers the fuzz targets share: splitting one input into fields, and a model of how a POSIX shell
//! splits the words `gangplank_core::cmd` renders.

/// The input as text (invalid UTF-8 is skipped: every parser here takes `&str`).
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// `n` fields separated by NUL (missing fields are empty), so one input can carry several strings.
pub fn fields(s: &str, n: usize) -> Vec<&str> {
    let mut out: Vec<&str> = s.splitn(n, '\0').collect();
    out.resize(n, "");
    out
}

/// A stable choice from the input itself, so a crash reproduces from its artifact alone.
pub fn one_in(data: &[u8], n: u64) -> bool {
    // FNV-1a.
    let h = data.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ *b as u64).wrapping_mul(0x100000001b3));
    h % n == 0
}

/// Split a command line the way a POSIX shell (sh(1), "Token Recognition" and "Quote Removal") does, for
/// the only syntax [`gangplank_core::quote`] and `Cmd::render` produce: words separated by spaces, single
/// quotes, `\`-escapes outside quotes, and `&&` as an operator. Anything else a shell would treat
/// specially (`$`, a backquote, `;`, a glob, a newline outside quotes, …) is an error: in a rendered
/// line it would be interpreted rather than passed on as data.
pub fn sh_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' => {
                if let Some(w) = cur.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = cur.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => w.push(c),
                        None => return Err(format!("unclosed single quote in {line:?}")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') | None => return Err(format!("line continuation or trailing `\\` in {line:?}")),
                Some(c) => cur.get_or_insert_with(String::new).push(c),
            },
            '&' if cur.is_none() && chars.peek() == Some(&'&') => {
                chars.next();
                words.push("&&".to_string());
            }
            '#' if cur.is_none() => return Err(format!("unquoted comment in {line:?}")),
            '=' | '%' | '+' | ',' | ':' | '@' | '/' | '.' | '-' | '_' => cur.get_or_insert_with(String::new).push(c),
            c if c.is_ascii_alphanumeric() => cur.get_or_insert_with(String::new).push(c),
            c => return Err(format!("unquoted {c:?} in {line:?}")),
        }
    }
    if let Some(w) = cur {
        words.push(w);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_model() {
        assert_eq!(sh_words(r"a 'b c'\''d' && e\ f").unwrap(), ["a", "b c'd", "&&", "e f"]);
        assert!(sh_words("a $b").is_err() && sh_words("'open").is_err() && sh_words("a;b").is_err());
        assert_eq!(sh_words("''").unwrap(), [""]);
    }
}
