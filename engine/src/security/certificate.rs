//! The principal of a client certificate: Kafka's default on SSL listeners is
//! `User:` + the certificate's subject as Java's `X500Principal.getName()` writes it
//! (RFC 2253: the last RDN first, `CN=alice,OU=eng,O=acme,C=US`), so that ACLs and quotas
//! written for a Kafka cluster name the same principals here.
//!
//! The certificate has already been verified by rustls against `--ssl-ca` when this reads
//! it; still, a small DER reader walks only the path to the subject and gives up, without a
//! panic, on anything it does not expect.

/// A DER element: its tag and contents.
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
}

/// Reads the DER element at the start of `input`; returns it and what follows.
fn element(input: &[u8]) -> Option<(Element<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers: nothing on the subject's path uses them
    }
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let count = (first & 0x7f) as usize;
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count]
            .iter()
            .fold(0usize, |length, &byte| (length << 8) | byte as usize);
        (length, &rest[count..])
    };
    if rest.len() < length {
        return None;
    }
    let (contents, rest) = rest.split_at(length);
    Some((Element { tag, contents }, rest))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
/// `[0] EXPLICIT`: the version, present in v2 and v3 certificates.
const VERSION: u8 = 0xa0;

/// The subject's RDNs in certificate order, each a list of (OID, value element).
fn subject(der: &[u8]) -> Option<Vec<Vec<(String, Element<'_>)>>> {
    let (certificate, _) = element(der)?;
    let (tbs, _) = element(certificate.contents).filter(|(e, _)| e.tag == SEQUENCE)?;
    let mut fields = tbs.contents;
    let mut next = || -> Option<Element<'_>> {
        let (field, rest) = element(fields)?;
        fields = rest;
        Some(field)
    };
    let mut field = next()?;
    if field.tag == VERSION {
        field = next()?;
    }
    // serialNumber (just read), signature, issuer, validity, then the subject.
    for _ in 0..3 {
        next()?;
    }
    let _ = field;
    let name = next().filter(|name| name.tag == SEQUENCE)?;
    let mut rdns = Vec::new();
    let mut rest = name.contents;
    while !rest.is_empty() {
        let (rdn, after) = element(rest).filter(|(e, _)| e.tag == SET)?;
        rest = after;
        let mut attributes = Vec::new();
        let mut inner = rdn.contents;
        while !inner.is_empty() {
            let (pair, after) = element(inner).filter(|(e, _)| e.tag == SEQUENCE)?;
            inner = after;
            let (oid, value) = element(pair.contents).filter(|(e, _)| e.tag == OID)?;
            let (value, _) = element(value)?;
            attributes.push((oid_string(oid.contents)?, value));
        }
        rdns.push(attributes);
    }
    Some(rdns)
}

/// An OID's dotted form.
fn oid_string(bytes: &[u8]) -> Option<String> {
    let mut arcs: Vec<u64> = Vec::new();
    let mut arc: u64 = 0;
    for &byte in bytes {
        arc = arc.checked_mul(128)?.checked_add(u64::from(byte & 0x7f))?;
        if byte & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (arc / 40).min(2);
                arcs.extend([first, arc - 40 * first]);
            } else {
                arcs.push(arc);
            }
            arc = 0;
        }
    }
    if arcs.is_empty() || bytes.last().is_some_and(|byte| byte & 0x80 != 0) {
        return None;
    }
    Some(
        arcs.iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// The keywords Java's RFC 2253 form uses; other attributes are written as `OID=#hex`.
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "STREET",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// A directory string's text, for the string types a subject uses.
fn text(value: &Element<'_>) -> Option<String> {
    match value.tag {
        // UTF8String, PrintableString, IA5String, NumericString
        0x0c | 0x13 | 0x16 | 0x12 => String::from_utf8(value.contents.to_vec()).ok(),
        // TeletexString, read as Latin-1 as most decoders do
        0x14 => Some(value.contents.iter().map(|&byte| byte as char).collect()),
        // BMPString: UTF-16BE
        0x1e if value.contents.len().is_multiple_of(2) => String::from_utf16(
            &value
                .contents
                .chunks(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect::<Vec<_>>(),
        )
        .ok(),
        _ => None,
    }
}

/// RFC 2253's escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (index, character) in value.chars().enumerate() {
        let special = matches!(character, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (index == 0 && matches!(character, '#' | ' '))
            || (index == last && character == ' ');
        if special {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

/// `User:` and the subject of a DER certificate in RFC 2253 form, or `None` when it cannot
/// be read (Kafka's default, without `--ssl-principal-mapping-rules`).
pub fn principal(der: &[u8]) -> Option<String> {
    subject_name(der).map(|name| format!("User:{name}"))
}

/// The subject of a DER certificate in RFC 2253 form, as Java's `X500Principal.getName()`
/// writes it, or `None` when it cannot be read.
pub fn subject_name(der: &[u8]) -> Option<String> {
    let rdns = subject(der)?;
    let mut parts = Vec::with_capacity(rdns.len());
    for rdn in rdns.iter().rev() {
        let mut attributes = Vec::with_capacity(rdn.len());
        for (oid, value) in rdn {
            let written = match (keyword(oid), text(value)) {
                (Some(keyword), Some(text)) => format!("{keyword}={}", escape(&text)),
                _ => {
                    // Java writes the value's whole DER encoding in hex.
                    let mut hex = format!("{oid}=#{:02x}", value.tag);
                    let length = value.contents.len();
                    if length < 0x80 {
                        hex.push_str(&format!("{length:02x}"));
                    } else {
                        let bytes = (length as u32).to_be_bytes();
                        let skip = bytes.iter().take_while(|&&byte| byte == 0).count();
                        hex.push_str(&format!("{:02x}", 0x80 | (4 - skip)));
                        for byte in &bytes[skip..] {
                            hex.push_str(&format!("{byte:02x}"));
                        }
                    }
                    for byte in value.contents {
                        hex.push_str(&format!("{byte:02x}"));
                    }
                    hex
                }
            };
            attributes.push(written);
        }
        parts.push(attributes.join("+"));
    }
    Some(parts.join(","))
}

#[cfg(test)]
#[path = "certificate_tests.rs"]
mod tests;
