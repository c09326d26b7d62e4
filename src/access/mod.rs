//! Who is asking, and may they read this repository.
//!
//! Identity is decided once per request, in the server, from the `Authorization`
//! header each client sends in its own way ([`credentials`]): HTTP Basic (pip, uv,
//! Maven, npm's `_auth`), Bearer (npm's `_authToken`, the admin token) and cargo's
//! bare token. [`Authenticator`] checks them against the configured users (argon2id
//! hashes, or an `htpasswd` file's bcrypt hashes) and the API tokens in the metadata
//! store. The [`Access`] of each repository is enforced before its protocol is
//! called, and every feature that exposes a repository's content (badges, the
//! status page, the API) calls [`Access::decide`] with the same [`Identity`].
//!
//! No secret is logged or returned: credentials live in this module only as long as
//! a check takes, and what is cached is keyed by a salted hash.

mod credentials;
mod passwords;
mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use moka::sync::Cache;
use sha2::{Digest as _, Sha256};

pub use credentials::Credentials;
pub use passwords::{hash_password, PasswordHashError, StoredPassword};
pub use tokens::{new_token, token_hash, TOKEN_PREFIX};

use crate::metadata::MetadataStore;

/// How long a successful check is remembered (password hashing is slow on purpose;
/// clients send credentials with every request).
const VERIFIED_FOR: Duration = Duration::from_secs(300);
/// How long a failed check is remembered (bounds the hashing work of a flood of
/// wrong passwords).
const REJECTED_FOR: Duration = Duration::from_secs(5);

/// The caller, as authenticated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// The user, when credentials were presented and valid.
    pub user: Option<String>,
    /// The user's groups.
    pub groups: Vec<String>,
    /// May purge caches, warm, refresh resolutions, see the full status page.
    pub admin: bool,
}

impl Identity {
    /// Nobody in particular.
    #[must_use]
    pub fn anonymous() -> Self {
        Self::default()
    }

    #[must_use]
    pub fn is_authenticated(&self) -> bool {
        self.user.is_some() || self.admin
    }

    /// Whether `principal` (`name` or `group:name`) names this caller.
    fn is(&self, principal: &Principal) -> bool {
        match principal {
            Principal::User(name) => self.user.as_deref() == Some(name.as_str()),
            Principal::Group(name) => self.groups.iter().any(|g| g == name),
        }
    }
}

/// A user or a group in an access list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    User(String),
    Group(String),
}

impl Principal {
    /// `name` or `group:name`.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        match text.strip_prefix("group:") {
            Some(group) => Self::Group(group.to_owned()),
            None => Self::User(text.to_owned()),
        }
    }
}

/// Who may read a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Anonymous,
    Authenticated,
    Only(Vec<Principal>),
}

/// What [`Access::decide`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No (valid) credentials, and they are needed: 401 with a challenge.
    NeedCredentials,
    /// Authenticated, but not allowed: 403.
    Forbidden,
}

impl Access {
    #[must_use]
    pub fn decide(&self, identity: &Identity) -> Decision {
        match self {
            Self::Anonymous => Decision::Allow,
            _ if identity.admin => Decision::Allow,
            _ if !identity.is_authenticated() => Decision::NeedCredentials,
            Self::Authenticated => Decision::Allow,
            Self::Only(allowed) if allowed.iter().any(|p| identity.is(p)) => Decision::Allow,
            Self::Only(_) => Decision::Forbidden,
        }
    }

    #[must_use]
    pub fn is_private(&self) -> bool {
        *self != Self::Anonymous
    }
}

/// Why credentials were refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the credentials are not valid")]
    Invalid,
    #[error("credentials cannot be checked right now: {0}")]
    Unavailable(String),
}

/// The configured users and groups, and where tokens are.
#[derive(Debug, Default)]
pub struct AuthSettings {
    /// User name → stored password.
    pub users: HashMap<String, StoredPassword>,
    /// Group name → members.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Principals with the admin role.
    pub admins: Vec<Principal>,
    /// The legacy `admin_token`: a Bearer token with the admin role.
    pub admin_token: Option<String>,
}

/// Checks credentials. Cheap to share.
#[derive(Debug)]
pub struct Authenticator {
    settings: AuthSettings,
    tokens: Arc<dyn MetadataStore>,
    /// Outcomes by a salted hash of the `Authorization` value.
    checked: Cache<[u8; 32], Result<Identity, ()>>,
    salt: [u8; 32],
}

impl Authenticator {
    #[must_use]
    pub fn new(settings: AuthSettings, tokens: Arc<dyn MetadataStore>) -> Self {
        Self {
            settings,
            tokens,
            checked: Cache::builder()
                .max_capacity(100_000)
                .expire_after(CheckExpiry)
                .build(),
            salt: rand::random(),
        }
    }

    /// Whether anyone can have the admin role.
    #[must_use]
    pub fn has_admins(&self) -> bool {
        self.settings.admin_token.is_some() || !self.settings.admins.is_empty()
    }

    /// The caller of a request with this `Authorization` header value (absent:
    /// anonymous).
    ///
    /// # Errors
    /// Credentials that are presented but not valid, or a token store that fails.
    pub async fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Identity, AuthError> {
        let Some(value) = authorization else {
            return Ok(Identity::anonymous());
        };
        let cache_key: [u8; 32] = Sha256::new()
            .chain_update(self.salt)
            .chain_update(value)
            .finalize()
            .into();
        if let Some(outcome) = self.checked.get(&cache_key) {
            return outcome.map_err(|()| AuthError::Invalid);
        }
        let outcome = match Credentials::parse(value) {
            None => Err(AuthError::Invalid),
            Some(credentials) => self.check(credentials).await,
        };
        match &outcome {
            Ok(identity) => self.checked.insert(cache_key, Ok(identity.clone())),
            Err(AuthError::Invalid) => self.checked.insert(cache_key, Err(())),
            // A failing store says nothing about the credentials: not remembered.
            Err(AuthError::Unavailable(_)) => {}
        }
        outcome
    }

    async fn check(&self, credentials: Credentials) -> Result<Identity, AuthError> {
        match credentials {
            Credentials::Basic { user, password } if user == "__token__" => {
                self.check_token(&password).await
            }
            Credentials::Basic { user, password } => {
                let Some(stored) = self.settings.users.get(&user).cloned() else {
                    // Hash anyway, so an unknown user costs what a wrong password does.
                    let _ = tokio::task::spawn_blocking(passwords::burn).await;
                    return Err(AuthError::Invalid);
                };
                let valid = tokio::task::spawn_blocking(move || stored.verify(&password))
                    .await
                    .unwrap_or(false);
                if valid {
                    Ok(self.identity_of(&user))
                } else {
                    Err(AuthError::Invalid)
                }
            }
            Credentials::Bearer(token) | Credentials::Bare(token) => {
                if let Some(admin) = &self.settings.admin_token {
                    if constant_time_eq(token.as_bytes(), admin.as_bytes()) {
                        return Ok(Identity {
                            user: None,
                            groups: Vec::new(),
                            admin: true,
                        });
                    }
                }
                self.check_token(&token).await
            }
        }
    }

    async fn check_token(&self, token: &str) -> Result<Identity, AuthError> {
        if !token.starts_with(TOKEN_PREFIX) {
            return Err(AuthError::Invalid);
        }
        let found = self
            .tokens
            .api_token(&token_hash(token))
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        match found {
            Some(record) if !record.is_expired(std::time::SystemTime::now()) => {
                Ok(self.identity_of(&record.user))
            }
            _ => Err(AuthError::Invalid),
        }
    }

    fn identity_of(&self, user: &str) -> Identity {
        let groups: Vec<String> = self
            .settings
            .groups
            .iter()
            .filter(|(_, members)| members.iter().any(|m| m == user))
            .map(|(group, _)| group.clone())
            .collect();
        let mut identity = Identity {
            user: Some(user.to_owned()),
            groups,
            admin: false,
        };
        identity.admin = self.settings.admins.iter().any(|p| identity.is(p));
        identity
    }
}

/// Successes are remembered for [`VERIFIED_FOR`], failures for [`REJECTED_FOR`].
struct CheckExpiry;

impl moka::Expiry<[u8; 32], Result<Identity, ()>> for CheckExpiry {
    fn expire_after_create(
        &self,
        _: &[u8; 32],
        value: &Result<Identity, ()>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(if value.is_ok() {
            VERIFIED_FOR
        } else {
            REJECTED_FOR
        })
    }
}

/// Compares without an early exit, so response time does not reveal a prefix match.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(user: &str, groups: &[&str]) -> Identity {
        Identity {
            user: Some(user.to_owned()),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            admin: false,
        }
    }

    #[test]
    fn access_decisions() {
        let anonymous = Identity::anonymous();
        let alice = identity("alice", &["team"]);
        let carol = identity("carol", &[]);
        let admin = Identity {
            admin: true,
            ..Identity::default()
        };
        assert_eq!(Access::Anonymous.decide(&anonymous), Decision::Allow);
        assert_eq!(
            Access::Authenticated.decide(&anonymous),
            Decision::NeedCredentials
        );
        assert_eq!(Access::Authenticated.decide(&carol), Decision::Allow);
        let team = Access::Only(vec![
            Principal::parse("group:team"),
            Principal::parse("bob"),
        ]);
        assert_eq!(team.decide(&alice), Decision::Allow);
        assert_eq!(team.decide(&carol), Decision::Forbidden);
        assert_eq!(team.decide(&anonymous), Decision::NeedCredentials);
        assert_eq!(team.decide(&identity("bob", &[])), Decision::Allow);
        assert_eq!(team.decide(&admin), Decision::Allow);
    }
}
