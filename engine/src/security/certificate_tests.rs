use super::*;

/// `openssl req -x509 -subj "/C=US/ST=New York/O=Acme, Inc./OU=eng+OU=ops/CN=alice/emailAddress=alice@example.com"`
/// (P-256 key), in DER.
const CERTIFICATE: &str = "30820259308201ffa003020102021448285e38c3973e7dfa8da385745b0280f11361c5300a06082a8648ce3d040302308181310b30090603550406130255533111300f06035504080c084e657720596f726b31133011060355040a0c0a41636d652c20496e632e3118300a060355040b0c03656e67300a060355040b0c036f7073310e300c06035504030c05616c6963653120301e06092a864886f70d0109011611616c696365406578616d706c652e636f6d301e170d3236313230373036333034375a170d3236313230393036333034375a308181310b30090603550406130255533111300f06035504080c084e657720596f726b31133011060355040a0c0a41636d652c20496e632e3118300a060355040b0c03656e67300a060355040b0c036f7073310e300c06035504030c05616c6963653120301e06092a864886f70d0109011611616c696365406578616d706c652e636f6d3059301306072a8648ce3d020106082a8648ce3d03010703420004a3f9abd91bb03f4fef0a8282532ad0c225e5d5e12fdddaa99e4bee00368a232aa0af488030f299494296ffdff636a6d4b267f6b50ca78e2bf98b7b238f6fc478a3533051301d0603551d0e04160414a972f44cda1994d334a8f042c590f887eff40261301f0603551d23041830168014a972f44cda1994d334a8f042c590f887eff40261300f0603551d130101ff040530030101ff300a06082a8648ce3d0403020348003045022100ba753a8473a7a439b26f19cedd13a84b8dbc19f7e199d1268c0d944d900ac46102205e2b206fb6377c09798ce8c0b07c41166b85804bfdf8dbf1c48e6069155006f1";

fn der() -> Vec<u8> {
    (0..CERTIFICATE.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&CERTIFICATE[at..at + 2], 16).unwrap())
        .collect()
}

#[test]
fn the_subject_reads_as_javas_rfc_2253_form() {
    assert_eq!(
        principal(&der()).unwrap(),
        "User:1.2.840.113549.1.9.1=#1611616c696365406578616d706c652e636f6d,\
         CN=alice,OU=eng+OU=ops,O=Acme\\, Inc.,ST=New York,C=US"
    );
}

#[test]
fn values_are_escaped_as_rfc_2253_says() {
    assert_eq!(
        escape("a,b+c\"d\\e<f>g;h"),
        "a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h"
    );
    assert_eq!(escape("#lead and trail "), "\\#lead and trail\\ ");
    assert_eq!(escape(" "), "\\ ");
    assert_eq!(escape(""), "");
}

#[test]
fn oids_read_in_dotted_form() {
    assert_eq!(oid_string(&[0x55, 0x04, 0x03]).unwrap(), "2.5.4.3");
    assert_eq!(
        oid_string(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]).unwrap(),
        "1.2.840.113549.1.9.1"
    );
    assert_eq!(oid_string(&[0x55, 0x84]), None, "an unfinished arc");
    assert_eq!(oid_string(&[]), None);
    assert_eq!(oid_string(&[0xff; 16]), None, "an arc too large");
}

/// Every truncation and many corruptions of a certificate give an answer or `None`, never a
/// panic.
#[test]
fn damaged_certificates_are_refused_without_a_panic() {
    let der = der();
    for length in 0..der.len() {
        let _ = principal(&der[..length]);
    }
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        let mut damaged = der.clone();
        for _ in 0..4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state % damaged.len() as u64) as usize;
            damaged[at] = (state >> 32) as u8;
        }
        let _ = principal(&damaged);
    }
    assert_eq!(principal(b"not a certificate"), None);
}
