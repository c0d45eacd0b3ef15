//! The Prometheus text exposition format (version 0.0.4), read line by line into samples.
//!
//! Hand-written rather than a crate: the crates that parse this format (`prometheus-parse`,
//! `openmetrics-parser`, `prometheus_exposition_format`) hand every value over as a binary float, and an
//! energy counter in millijoules must stay an exact decimal (the workspace denies float
//! arithmetic); `prometheus-parse` also matches each line with a regular expression and does not
//! undo the `\\`, `\"` and `\n` escapes of label values. This reader borrows from the input,
//! unescapes label values, keeps the value's text, and reports a malformed line with its number
//! instead of refusing the whole scrape.

use std::borrow::Cow;

/// One sample line: metric name, labels in the order written, and the value's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    pub value: &'a str,
    /// The optional timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
}

impl Sample<'_> {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_ref())
    }
}

/// A line that is neither a comment, blank, nor a sample: its 1-based number and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub line: usize,
    pub why: &'static str,
}

/// Every sample of `text`, and every malformed line (skipped; the rest is read on).
pub fn parse(text: &str) -> (Vec<Sample<'_>>, Vec<Malformed>) {
    let mut samples = Vec::new();
    let mut malformed = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match sample(trimmed) {
            Ok(s) => samples.push(s),
            Err(why) => malformed.push(Malformed { line: i + 1, why }),
        }
    }
    (samples, malformed)
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_name_byte(b: u8) -> bool {
    is_name_start(b) || b.is_ascii_digit()
}

/// The name at the start of `s` (metric names allow `:`, label names do not; the exporter
/// writes neither with one, so one rule serves both) and the rest.
fn name(s: &str) -> Result<(&str, &str), &'static str> {
    let b = s.as_bytes();
    if b.is_empty() || !is_name_start(b[0]) {
        return Err("no metric or label name");
    }
    let end = b.iter().position(|&c| !is_name_byte(c)).unwrap_or(b.len());
    Ok(s.split_at(end))
}

fn sample(line: &str) -> Result<Sample<'_>, &'static str> {
    let (metric, rest) = name(line)?;
    let (labels, rest) = match rest.strip_prefix('{') {
        Some(inner) => label_set(inner)?,
        None => (Vec::new(), rest),
    };
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or("no value")?;
    if !is_value(value) {
        return Err("value is not a number");
    }
    let timestamp_ms = match fields.next() {
        None => None,
        Some(t) => Some(t.parse::<i64>().map_err(|_| "timestamp is not an integer")?),
    };
    if fields.next().is_some() {
        return Err("text after the timestamp");
    }
    if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
        return Err("no blank before the value");
    }
    Ok(Sample { name: metric, labels, value, timestamp_ms })
}

/// A Go `ParseFloat` text: a decimal or exponent form, or `NaN`, `+Inf`, `-Inf`.
fn is_value(v: &str) -> bool {
    matches!(v, "NaN" | "+Inf" | "-Inf" | "Inf")
        || (!v.is_empty()
            && v.bytes().any(|c| c.is_ascii_digit())
            && v.bytes().all(|c| c.is_ascii_digit() || b"+-.eE".contains(&c)))
}

type Labels<'a> = Vec<(&'a str, Cow<'a, str>)>;

/// The labels after `{` up to the closing `}`, and the text after it.
fn label_set(mut s: &str) -> Result<(Labels<'_>, &str), &'static str> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok((labels, rest));
        }
        let (key, rest) = name(s)?;
        let rest = rest.trim_start_matches([' ', '\t']).strip_prefix('=').ok_or("label without =")?;
        let rest = rest.trim_start_matches([' ', '\t']).strip_prefix('"').ok_or("label value not quoted")?;
        let (value, rest) = quoted(rest)?;
        if labels.iter().any(|(k, _): &(&str, Cow<str>)| *k == key) {
            return Err("label named twice");
        }
        labels.push((key, value));
        s = rest.trim_start_matches([' ', '\t']);
        s = match s.strip_prefix(',') {
            Some(r) => r,
            None if s.starts_with('}') => s,
            None => return Err("labels not separated by a comma"),
        };
    }
}

/// A label value after its opening quote: the value (unescaped only if it had escapes) and
/// the text after the closing quote.
fn quoted(s: &str) -> Result<(Cow<'_, str>, &str), &'static str> {
    let b = s.as_bytes();
    let Some(end) = b.iter().position(|&c| c == b'"' || c == b'\\') else {
        return Err("label value not closed");
    };
    if b[end] == b'"' {
        return Ok((Cow::Borrowed(&s[..end]), &s[end + 1..]));
    }
    let mut out = String::from(&s[..end]);
    let mut chars = s[end..].char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((Cow::Owned(out), &s[end + i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                // The format defines only these three; anything else is kept as written.
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("label value not closed")
}
