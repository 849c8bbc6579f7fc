//! The server side of SASL/PLAIN (RFC 4616): one client message, `[authzid] NUL authcid NUL
//! passwd`, checked by a caller-supplied password check, as a pure function with no I/O. It
//! follows Apache Kafka's `PlainSaslServer`: the same checks in the same order and the same
//! error messages, except that a message must have exactly three parts (Kafka silently drops
//! whatever follows a third NUL) and must be UTF-8.

use super::scram::{AuthError, MAX_MESSAGE_BYTES};

/// Authenticates one SASL/PLAIN message (RFC 4616: `[authzid] NUL authcid NUL passwd`) and
/// returns the authenticated user. `verify(user, password)` says whether the password is the
/// user's (false for unknown users); it is called at most once, and only when both are
/// non-empty. The authorization id, if any, must be the user, as Kafka allows no other.
pub fn authenticate(
    message: &[u8],
    verify: impl FnOnce(&str, &str) -> bool,
) -> Result<String, AuthError> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(AuthError::MessageTooLong { len: message.len() });
    }
    let text = std::str::from_utf8(message).map_err(|_| AuthError::PlainNotUtf8)?;
    let [authzid, user, password] = split_parts(text)?;
    if user.is_empty() {
        return Err(AuthError::UsernameNotSpecified);
    }
    if password.is_empty() {
        return Err(AuthError::PasswordNotSpecified);
    }
    if !verify(user, password) {
        return Err(AuthError::InvalidUsernameOrPassword);
    }
    if !authzid.is_empty() && authzid != user {
        return Err(AuthError::AuthorizationIdMismatch);
    }
    Ok(user.to_owned())
}

/// The three NUL-separated parts of a PLAIN message; any other count is an error.
fn split_parts(text: &str) -> Result<[&str; 3], AuthError> {
    let mut parts = text.split('\0');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(authzid), Some(user), Some(password), None) => Ok([authzid, user, password]),
        _ => Err(AuthError::PlainTokenCount {
            tokens: text.split('\0').count(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A password check that knows alice with password "secret".
    fn alice(user: &str, password: &str) -> bool {
        user == "alice" && password == "secret"
    }

    /// A password check that must not be called.
    fn never(_: &str, _: &str) -> bool {
        panic!("verify called")
    }

    #[test]
    fn valid_credentials_authenticate() {
        assert_eq!(
            authenticate(b"\0alice\0secret", alice),
            Ok("alice".to_owned())
        );
        assert_eq!(
            authenticate(b"alice\0alice\0secret", alice),
            Ok("alice".to_owned())
        );
    }

    #[test]
    fn wrong_password_or_unknown_user_fails() {
        for message in [&b"\0alice\0wrong"[..], b"\0bob\0secret"] {
            let err = authenticate(message, alice).unwrap_err();
            assert_eq!(err, AuthError::InvalidUsernameOrPassword);
            assert_eq!(
                err.to_string(),
                "Authentication failed: Invalid username or password"
            );
            assert!(err.is_sent_to_client());
        }
    }

    #[test]
    fn empty_parts_fail_before_verifying() {
        let err = authenticate(b"\0\0secret", never).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Authentication failed: username not specified"
        );
        let err = authenticate(b"\0alice\0", never).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Authentication failed: password not specified"
        );
        assert_eq!(
            authenticate(b"\0\0", never),
            Err(AuthError::UsernameNotSpecified)
        );
    }

    #[test]
    fn authzid_different_from_user_fails() {
        let err = authenticate(b"admin\0alice\0secret", alice).unwrap_err();
        assert_eq!(err, AuthError::AuthorizationIdMismatch);
        assert_eq!(
            err.to_string(),
            "Authentication failed: Client requested an authorization id that is different from username"
        );
        // With a wrong password the password is what fails, as in Kafka.
        assert_eq!(
            authenticate(b"admin\0alice\0wrong", alice),
            Err(AuthError::InvalidUsernameOrPassword)
        );
    }

    #[test]
    fn other_part_counts_fail() {
        let cases: [(&[u8], usize); 5] = [
            (b"", 1),
            (b"alice", 1),
            (b"alice\0secret", 2),
            (b"\0alice\0secret\0extra", 4),
            (b"\0alice\0secret\0", 4),
        ];
        for (message, tokens) in cases {
            let err = authenticate(message, never).unwrap_err();
            assert_eq!(err, AuthError::PlainTokenCount { tokens });
            assert_eq!(
                err.to_string(),
                format!("Invalid SASL/PLAIN response: expected 3 tokens, got {tokens}")
            );
        }
    }

    #[test]
    fn oversized_and_non_utf8_messages_fail() {
        let mut message = b"\0alice\0".to_vec();
        message.resize(MAX_MESSAGE_BYTES + 1, b'x');
        assert_eq!(
            authenticate(&message, never),
            Err(AuthError::MessageTooLong {
                len: MAX_MESSAGE_BYTES + 1
            })
        );
        message.truncate(MAX_MESSAGE_BYTES);
        assert_eq!(
            authenticate(&message, |_, p| p.len() == MAX_MESSAGE_BYTES - 7),
            Ok("alice".to_owned())
        );
        assert_eq!(
            authenticate(b"\0al\xffice\0secret", never),
            Err(AuthError::PlainNotUtf8)
        );
    }

    #[test]
    fn random_messages_never_panic() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            let message: Vec<u8> = (0..len)
                .map(|i| match (state >> (i % 60)) % 5 {
                    0 => 0,
                    1 => 0xff,
                    _ => b'a' + (i as u8 % 3),
                })
                .collect();
            let _ = authenticate(&message, |u, p| u.len() == p.len());
        }
    }
}
