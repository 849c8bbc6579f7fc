//! `--ssl-principal-mapping-rules` (Kafka's `ssl.principal.mapping.rules`): how a client
//! certificate's subject becomes the principal's name, so that `CN=alice,OU=eng,O=acme` can be
//! `User:alice` and the ACLs of a Kafka cluster that used such rules carry over unchanged.
//!
//! The rules are Kafka's, read as Kafka reads them: a comma-separated list of `DEFAULT` (the
//! whole subject, RFC 2253) and `RULE:pattern/replacement/` with an optional `L` or `U` after
//! the last slash (lower or upper case the result); a backslash escapes a slash or a comma
//! inside a pattern. The first rule whose pattern matches the *whole* subject names the
//! principal: the subject with every match of the pattern replaced, as Java's `replaceAll`
//! does. A subject that no rule matches is refused, as Kafka refuses the connection. The
//! default is `DEFAULT`.
//!
//! Patterns are compiled by the `regex` crate, which agrees with Java's syntax on what such
//! rules use (classes, groups, lazy and greedy repetition, anchors) but has no look-around or
//! back-references in the pattern: a rule that uses them fails at start, naming the rule. In
//! replacements `$N` is group N (with Kafka's reading of `$12` as group 1 followed by `2` when
//! there are fewer than 12 groups, and of a group number above the count as literal text),
//! `${name}` a named group, and `\x` a literal `x`.

use anyhow::{bail, Context};
use regex::{Captures, Regex};

/// The parsed rules; see the module docs.
#[derive(Clone, Debug)]
pub struct PrincipalMapper {
    rules: Vec<Rule>,
}

impl Default for PrincipalMapper {
    fn default() -> PrincipalMapper {
        PrincipalMapper {
            rules: vec![Rule::Default],
        }
    }
}

#[derive(Clone, Debug)]
enum Rule {
    Default,
    Replace {
        /// The pattern as given.
        pattern: Regex,
        /// The same, anchored at both ends: whether the rule applies.
        whole: Regex,
        replacement: Vec<Piece>,
        case: Case,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

/// A replacement, parsed once.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
    Named(String),
}

impl PrincipalMapper {
    /// Parses Kafka's rule list.
    pub fn parse(text: &str) -> anyhow::Result<PrincipalMapper> {
        let mut rules = Vec::new();
        for rule in split_rules(text)? {
            rules.push(parse_rule(&rule).with_context(|| {
                format!("--ssl-principal-mapping-rules: invalid rule `{rule}`")
            })?);
        }
        anyhow::ensure!(
            !rules.is_empty(),
            "--ssl-principal-mapping-rules is empty (DEFAULT keeps the whole subject)"
        );
        Ok(PrincipalMapper { rules })
    }

    /// Whether these are the default rules (the whole subject).
    pub fn is_default(&self) -> bool {
        matches!(self.rules.as_slice(), [Rule::Default])
    }

    /// The principal's name for a subject written in RFC 2253 form, or `None` when no rule
    /// applies.
    pub fn name(&self, subject: &str) -> Option<String> {
        self.rules.iter().find_map(|rule| rule.apply(subject))
    }
}

impl Rule {
    fn apply(&self, subject: &str) -> Option<String> {
        let Rule::Replace {
            pattern,
            whole,
            replacement,
            case,
        } = self
        else {
            return Some(subject.to_string());
        };
        if !whole.is_match(subject) {
            return None;
        }
        let groups = pattern.captures_len() - 1;
        let replaced = pattern.replace_all(subject, |captures: &Captures<'_>| {
            expand(replacement, groups, captures)
        });
        Some(match case {
            Case::Keep => replaced.into_owned(),
            Case::Lower => replaced.to_lowercase(),
            Case::Upper => replaced.to_uppercase(),
        })
    }
}

fn expand(replacement: &[Piece], groups: usize, captures: &Captures<'_>) -> String {
    let mut out = String::new();
    for piece in replacement {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Group(group) => {
                // Kafka: `$12` with fewer than 12 groups is group 1 and the text `2`; a group
                // above the count is the literal text.
                let digits = group.to_string();
                let mut index = *group;
                let mut kept = digits.len();
                while index > groups && index >= 10 {
                    index /= 10;
                    kept -= 1;
                }
                if index > groups {
                    out.push('$');
                    out.push_str(&digits);
                } else {
                    out.push_str(captures.get(index).map_or("", |found| found.as_str()));
                    out.push_str(&digits[kept..]);
                }
            }
            Piece::Named(name) => {
                out.push_str(captures.name(name).map_or("", |found| found.as_str()));
            }
        }
    }
    out
}

/// Splits the list at commas that are not inside a rule's pattern or replacement (a `RULE:`
/// runs to its third slash and its flags).
fn split_rules(text: &str) -> anyhow::Result<Vec<String>> {
    let mut rules = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let end = if let Some(body) = rest.strip_prefix("RULE:") {
            // Pattern and replacement: escaped characters or anything but `\` and `/`.
            let mut at = 0;
            let bytes = body.as_bytes();
            for _ in 0..2 {
                while at < bytes.len() && bytes[at] != b'/' {
                    at += if bytes[at] == b'\\' { 2 } else { 1 };
                }
                anyhow::ensure!(
                    at < bytes.len(),
                    "--ssl-principal-mapping-rules: `{rest}` is not RULE:pattern/replacement/"
                );
                at += 1;
            }
            "RULE:".len() + at + body[at..].find(',').unwrap_or(body.len() - at)
        } else {
            rest.find(',').unwrap_or(rest.len())
        };
        let rule = rest[..end].trim();
        if !rule.is_empty() {
            rules.push(rule.to_string());
        }
        rest = rest[end..].trim_start_matches(',').trim_start();
    }
    Ok(rules)
}

fn parse_rule(rule: &str) -> anyhow::Result<Rule> {
    if rule == "DEFAULT" {
        return Ok(Rule::Default);
    }
    let Some(body) = rule.strip_prefix("RULE:") else {
        bail!("expected DEFAULT or RULE:pattern/replacement/[LU]");
    };
    let (pattern, after) = until_slash(body)?;
    let (replacement, flags) = until_slash(after)?;
    let case = match flags.trim() {
        "" => Case::Keep,
        "L" => Case::Lower,
        "U" => Case::Upper,
        other => bail!("`{other}` after the replacement: expected L, U or nothing"),
    };
    let compiled = Regex::new(&pattern).context("the pattern")?;
    let whole = Regex::new(&format!("^(?:{pattern})$")).context("the pattern")?;
    Ok(Rule::Replace {
        pattern: compiled,
        whole,
        replacement: parse_replacement(&replacement)?,
        case,
    })
}

/// Text up to the first unescaped `/` (kept as written: escapes belong to the pattern) and
/// what follows that slash.
fn until_slash(text: &str) -> anyhow::Result<(String, &str)> {
    let mut chars = text.char_indices();
    while let Some((at, character)) = chars.next() {
        match character {
            '\\' => {
                chars.next();
            }
            '/' => return Ok((text[..at].to_string(), &text[at + 1..])),
            _ => {}
        }
    }
    bail!("expected RULE:pattern/replacement/ (a slash is missing)")
}

fn parse_replacement(text: &str) -> anyhow::Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(character) = chars.next() {
        match character {
            '\\' => literal.push(
                chars
                    .next()
                    .context("the replacement ends with a lone backslash")?,
            ),
            '$' => {
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                if chars.peek() == Some(&'{') {
                    chars.next();
                    let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    anyhow::ensure!(!name.is_empty(), "an empty ${{}} in the replacement");
                    pieces.push(Piece::Named(name));
                    continue;
                }
                let mut digits = String::new();
                while let Some(digit) = chars.peek().filter(|c| c.is_ascii_digit()) {
                    digits.push(*digit);
                    chars.next();
                }
                anyhow::ensure!(
                    !digits.is_empty(),
                    "`$` in the replacement must name a group ($1, ${{name}}); write \\$ for a dollar"
                );
                pieces.push(Piece::Group(
                    digits.parse().context("a group number too large")?,
                ));
            }
            other => literal.push(other),
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

#[cfg(test)]
#[path = "principal_mapping_tests.rs"]
mod tests;
