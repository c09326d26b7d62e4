//! The `Authorization` header as each client sends it.
//!
//! | client | header |
//! |---|---|
//! | pip, uv (URL, `.netrc`, keyring, `UV_INDEX_*`) | `Basic base64(user:password)`; `__token__` as user with a token as password |
//! | npm, pnpm, yarn | `Bearer <_authToken>`, or `Basic <_auth>` |
//! | cargo (`auth-required`) | `<token>`, no scheme |
//! | Maven (`settings.xml` `<server>`) | `Basic …`, after a 401 with a Basic challenge |

use base64::Engine as _;

/// Credentials presented by a client. Never logged (no `Debug` of the secrets).
pub enum Credentials {
    Basic {
        user: String,
        password: String,
    },
    Bearer(String),
    /// A token without a scheme, as cargo sends it.
    Bare(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Basic { user, .. } => write!(f, "Basic({user}, <redacted>)"),
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Self::Bare(_) => f.write_str("Bare(<redacted>)"),
        }
    }
}

/// Longest header value considered (a token or user:password is far shorter).
const MAX_VALUE: usize = 4096;

impl Credentials {
    /// Parses a header value; `None` when it is not one of the forms above.
    #[must_use]
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() > MAX_VALUE {
            return None;
        }
        let value = std::str::from_utf8(value).ok()?.trim();
        let (scheme, rest) = value.split_once(' ').unwrap_or(("", value));
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (user, password) = decoded.split_once(':')?;
            if user.is_empty() {
                return None;
            }
            return Some(Self::Basic {
                user: user.to_owned(),
                password: password.to_owned(),
            });
        }
        if scheme.eq_ignore_ascii_case("bearer") {
            let token = rest.trim();
            return (!token.is_empty()).then(|| Self::Bearer(token.to_owned()));
        }
        // cargo: the token itself, no scheme, no spaces.
        (!value.is_empty() && !value.contains(' ')).then(|| Self::Bare(value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_clients_form_is_understood() {
        let basic = base64::engine::general_purpose::STANDARD.encode("alice:s3:cret");
        match Credentials::parse(format!("Basic {basic}").as_bytes()) {
            Some(Credentials::Basic { user, password }) => {
                assert_eq!((user.as_str(), password.as_str()), ("alice", "s3:cret"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Credentials::parse(b"Bearer abc"),
            Some(Credentials::Bearer(t)) if t == "abc"
        ));
        assert!(matches!(
            Credentials::parse(b"granary_0123"),
            Some(Credentials::Bare(t)) if t == "granary_0123"
        ));
        assert!(Credentials::parse(b"Basic !!!").is_none());
        assert!(Credentials::parse(b"Digest a b").is_none());
        assert!(Credentials::parse(&[0xff, 0xfe]).is_none());
        let debug = format!(
            "{:?}",
            Credentials::parse(format!("Basic {basic}").as_bytes())
        );
        assert!(!debug.contains("s3:cret"), "{debug}");
    }
}
