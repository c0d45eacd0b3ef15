//! The CloudEvents JSON batch format (`application/cloudevents-batch+json`): a JSON array of
//! events, cut into each event's bytes exactly as received. Only the array itself is read here;
//! what is inside each element is the usage parser's to judge, so that a malformed event is
//! refused with its index and the parser's reason (`malformed_json`, `invalid_utf8`, ...) and an
//! accepted one reaches Kafka byte for byte as it was validated. serde_json's `RawValue` would
//! refuse the whole body for one bad element, hence this small scanner.

/// Why a body is not a batch at all (a 400 for the whole request).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotABatch {
    /// Not a JSON array of values: the first byte where it went wrong.
    Malformed(usize),
    /// More elements than allowed (counting stops there).
    TooMany(usize),
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// The elements of a JSON array, each without the whitespace around it, at most `max` of them.
pub(crate) fn split_batch(body: &[u8], max: usize) -> Result<Vec<&[u8]>, NotABatch> {
    let mut i = body.iter().position(|&b| !is_space(b)).ok_or(NotABatch::Malformed(0))?;
    if body[i] != b'[' {
        return Err(NotABatch::Malformed(i));
    }
    i += 1;
    let mut out = Vec::new();
    loop {
        while i < body.len() && is_space(body[i]) {
            i += 1;
        }
        if out.is_empty() && body.get(i) == Some(&b']') {
            i += 1;
            break;
        }
        let end = element_end(body, i)?;
        if end == i {
            return Err(NotABatch::Malformed(i));
        }
        let mut trimmed = end;
        while trimmed > i && is_space(body[trimmed - 1]) {
            trimmed -= 1;
        }
        if out.len() == max {
            return Err(NotABatch::TooMany(max));
        }
        out.push(&body[i..trimmed]);
        i = end + 1;
        if body[end] == b']' {
            break;
        }
    }
    if body[i..].iter().any(|&b| !is_space(b)) {
        return Err(NotABatch::Malformed(i));
    }
    Ok(out)
}

/// Where the element starting at `start` ends: the index of the `,` or `]` after it at the
/// array's own depth (strings and nested brackets skipped).
fn element_end(body: &[u8], start: usize) -> Result<usize, NotABatch> {
    let (mut depth, mut i) = (0usize, start);
    while i < body.len() {
        match body[i] {
            b'"' => i = string_end(body, i + 1)?,
            b'{' | b'[' => depth += 1,
            b'}' | b']' if depth > 0 => depth -= 1,
            b',' | b']' if depth == 0 => return Ok(i),
            b'}' => return Err(NotABatch::Malformed(i)),
            _ => {}
        }
        i += 1;
    }
    Err(NotABatch::Malformed(body.len()))
}

/// The index of the `"` that closes the string whose content starts at `from` (an escaped byte
/// skipped). Most of a batch is strings, so they are crossed with `memchr`, not byte by byte.
fn string_end(body: &[u8], mut from: usize) -> Result<usize, NotABatch> {
    while from < body.len() {
        let at = from + memchr::memchr2(b'"', b'\\', &body[from..]).ok_or(NotABatch::Malformed(body.len()))?;
        if body[at] == b'"' {
            return Ok(at);
        }
        from = at + 2;
    }
    Err(NotABatch::Malformed(body.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str, want: Result<Vec<&str>, NotABatch>) {
        let got = split_batch(body.as_bytes(), 3)
            .map(|v| v.into_iter().map(|e| std::str::from_utf8(e).unwrap()).collect::<Vec<_>>());
        assert_eq!(got, want, "{body:?}");
    }

    #[test]
    fn a_batch_is_cut_into_its_elements_as_sent() {
        check("[]", Ok(vec![]));
        check(" [ ] ", Ok(vec![]));
        check(r#"[{"a":1}]"#, Ok(vec![r#"{"a":1}"#]));
        check(" [ {\"a\": [1, {\"b\":\"],}\\\"\"}]} ,\n{} ] \n", Ok(vec!["{\"a\": [1, {\"b\":\"],}\\\"\"}]}", "{}"]));
        // What is inside an element is the parser's to refuse, with the element's index.
        check(r#"[{"a":nope}, 7, "x"]"#, Ok(vec![r#"{"a":nope}"#, "7", r#""x""#]));
        check("[{\"a\":\"\\\\\"},{}]", Ok(vec!["{\"a\":\"\\\\\"}", "{}"]));
    }

    #[test]
    fn what_is_no_array_is_refused_whole() {
        check("", Err(NotABatch::Malformed(0)));
        check(r#"{"a":1}"#, Err(NotABatch::Malformed(0)));
        check("[", Err(NotABatch::Malformed(1)));
        check("[{}", Err(NotABatch::Malformed(3)));
        check("[{},]", Err(NotABatch::Malformed(4)));
        check("[,{}]", Err(NotABatch::Malformed(1)));
        check("[{}] x", Err(NotABatch::Malformed(4)));
        check("[{}}]", Err(NotABatch::Malformed(3)));
        check(r#"["unterminated]"#, Err(NotABatch::Malformed(15)));
        check("[1,2,3,4]", Err(NotABatch::TooMany(3)));
    }
}
