//! A client certificate's subject written as Kafka writes it (Java's
//! `X500Principal.getName()`, RFC 2253): the most specific RDN first, RDNs
//! joined by `,` and the attributes of a multi-valued RDN by `+`, no spaces,
//! the usual attributes by keyword (`CN`, `OU`, `O`, `L`, `ST`, `C`,
//! `STREET`, `DC`, `UID`), any other by its dotted OID with the value as `#`
//! and the hex of its DER encoding; `,+"\<>;`, a leading `#` or space and a
//! trailing space are escaped with `\`.

use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::x509::AttributeTypeAndValue;

/// The subject of the DER certificate `der`, as RFC 2253 writes it; `None`
/// when it does not parse (rustls verified it, so it does).
pub fn subject_of(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let rdns: Vec<String> =
        cert.subject().iter_rdn().map(|rdn| rdn.iter().map(attribute).collect::<Vec<_>>().join("+")).collect();
    Some(rdns.into_iter().rev().collect::<Vec<_>>().join(","))
}

/// Keywords RFC 2253 (and Java) write instead of the OID.
const KEYWORDS: [(&str, &str); 9] = [
    ("2.5.4.3", "CN"),
    ("2.5.4.6", "C"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("0.9.2342.19200300.100.1.25", "DC"),
    ("0.9.2342.19200300.100.1.1", "UID"),
];

fn attribute(attr: &AttributeTypeAndValue<'_>) -> String {
    let oid = attr.attr_type().to_id_string();
    let keyword = KEYWORDS.iter().find(|(id, _)| *id == oid).map(|(_, k)| *k);
    match (keyword, text(attr)) {
        (Some(keyword), Some(value)) => format!("{keyword}={}", escape(&value)),
        _ => format!("{oid}=#{}", hex_der(attr)),
    }
}

/// The value as text, for the string types.
fn text(attr: &AttributeTypeAndValue<'_>) -> Option<String> {
    let value = attr.attr_value();
    match value.tag() {
        Tag::NumericString | Tag::PrintableString | Tag::Utf8String | Tag::Ia5String | Tag::T61String => {
            std::str::from_utf8(value.data).ok().map(str::to_owned)
        }
        Tag::BmpString => {
            let units: Vec<u16> = value.data.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// The value's DER encoding (tag, length, content) in hex.
fn hex_der(attr: &AttributeTypeAndValue<'_>) -> String {
    let value = attr.attr_value();
    let data = value.data;
    let mut der = vec![(value.class() as u8) << 6 | u8::from(value.header.is_constructed()) << 5 | value.tag().0 as u8];
    if data.len() < 0x80 {
        der.push(data.len() as u8);
    } else {
        let len = data.len().to_be_bytes();
        let skip = len.iter().take_while(|&&b| b == 0).count();
        der.push(0x80 | (len.len() - skip) as u8);
        der.extend_from_slice(&len[skip..]);
    }
    der.extend_from_slice(data);
    der.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 2253's escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(names: &[(rcgen::DnType, &str)]) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in names {
            params.distinguished_name.push(kind.clone(), *value);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_subject_reads_most_specific_first_without_spaces() {
        let der = certificate(&[
            (rcgen::DnType::CountryName, "DE"),
            (rcgen::DnType::OrganizationName, "Example"),
            (rcgen::DnType::CommonName, "alice"),
        ]);
        assert_eq!(subject_of(&der).unwrap(), "CN=alice,O=Example,C=DE");
    }

    #[test]
    fn special_characters_are_escaped() {
        let der = certificate(&[(rcgen::DnType::CommonName, " a,b+c\"d\\e<f>g;h ")]);
        assert_eq!(subject_of(&der).unwrap(), r#"CN=\ a\,b\+c\"d\\e\<f\>g\;h\ "#);
        assert_eq!(escape("#x"), r"\#x");
    }

    #[test]
    fn garbage_is_no_subject() {
        assert_eq!(subject_of(b"not a certificate"), None);
    }
}
