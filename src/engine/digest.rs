//! Hashing artifacts while they stream: SHA-256 always (the content address), plus
//! whatever the index published to verify against.

use sha2::digest::DynDigest;
use sha2::{Digest as _, Sha256};

/// A hash algorithm an index may publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlgorithm {
    Sha256,
    Sha512,
    Sha1,
    Md5,
}

impl DigestAlgorithm {
    /// Parses the names used by PEP 503 fragments and PEP 691 `hashes` keys.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            "sha1" => Some(Self::Sha1),
            "md5" => Some(Self::Md5),
            _ => None,
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
            Self::Sha1 => "sha1",
            Self::Md5 => "md5",
        }
    }

    /// A fresh hasher of this algorithm.
    #[must_use]
    pub fn hasher(self) -> Box<dyn DynDigest + Send> {
        match self {
            Self::Sha256 => Box::new(Sha256::new()),
            Self::Sha512 => Box::new(sha2::Sha512::new()),
            Self::Sha1 => Box::new(sha1::Sha1::new()),
            Self::Md5 => Box::new(md5::Md5::new()),
        }
    }
}

/// A digest the bytes must have, as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedDigest {
    pub algorithm: DigestAlgorithm,
    pub hex: String,
}

impl ExpectedDigest {
    #[must_use]
    pub fn new(algorithm: DigestAlgorithm, hex: &str) -> Self {
        Self {
            algorithm,
            hex: hex.to_ascii_lowercase(),
        }
    }
}

/// A mismatch found by [`StreamHasher::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestMismatch {
    pub algorithm: DigestAlgorithm,
    pub expected: String,
    pub actual: String,
}

/// Hashes a stream with SHA-256 and every other algorithm it may be checked against,
/// at once.
pub struct StreamHasher {
    sha256: Sha256,
    others: Vec<(DigestAlgorithm, Box<dyn DynDigest + Send>)>,
}

impl std::fmt::Debug for StreamHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHasher").finish_non_exhaustive()
    }
}

impl StreamHasher {
    /// Hashes with SHA-256 (always: the content address) and each of `algorithms`.
    #[must_use]
    pub fn new(algorithms: impl IntoIterator<Item = DigestAlgorithm>) -> Self {
        let mut others: Vec<(DigestAlgorithm, Box<dyn DynDigest + Send>)> = Vec::new();
        for algorithm in algorithms {
            if algorithm != DigestAlgorithm::Sha256 && !others.iter().any(|(a, _)| *a == algorithm)
            {
                others.push((algorithm, algorithm.hasher()));
            }
        }
        Self {
            sha256: Sha256::new(),
            others,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.sha256, bytes);
        for (_, hasher) in &mut self.others {
            hasher.update(bytes);
        }
    }

    /// The SHA-256 of everything seen, or the first expected digest that failed. An
    /// expected digest of an algorithm the hasher was not given fails too: nothing is
    /// ever passed unchecked.
    ///
    /// # Errors
    /// When any expected digest differs from the computed one.
    pub fn finish(self, expected: &[ExpectedDigest]) -> Result<String, DigestMismatch> {
        self.finish_all(expected).map(|computed| computed.sha256)
    }

    /// Like [`StreamHasher::finish`], with every digest computed.
    ///
    /// # Errors
    /// When any expected digest differs from the computed one.
    pub fn finish_all(self, expected: &[ExpectedDigest]) -> Result<Computed, DigestMismatch> {
        let sha256 = hex::encode(self.sha256.finalize());
        let computed: Vec<(DigestAlgorithm, String)> = self
            .others
            .into_iter()
            .map(|(algorithm, hasher)| (algorithm, hex::encode(hasher.finalize())))
            .collect();
        for wanted in expected {
            let actual = if wanted.algorithm == DigestAlgorithm::Sha256 {
                Some(sha256.as_str())
            } else {
                computed
                    .iter()
                    .find(|(algorithm, _)| *algorithm == wanted.algorithm)
                    .map(|(_, hex)| hex.as_str())
            };
            if actual != Some(wanted.hex.as_str()) {
                return Err(DigestMismatch {
                    algorithm: wanted.algorithm,
                    expected: wanted.hex.clone(),
                    actual: actual.unwrap_or("(not computed)").to_owned(),
                });
            }
        }
        Ok(Computed {
            sha256,
            others: computed,
        })
    }
}

/// Every digest a [`StreamHasher`] computed, lowercase hex.
#[derive(Debug, Clone)]
pub struct Computed {
    pub sha256: String,
    pub others: Vec<(DigestAlgorithm, String)>,
}

impl Computed {
    /// The digest in `algorithm`, if it was computed.
    #[must_use]
    pub fn get(&self, algorithm: DigestAlgorithm) -> Option<&str> {
        if algorithm == DigestAlgorithm::Sha256 {
            return Some(&self.sha256);
        }
        self.others
            .iter()
            .find(|(computed, _)| *computed == algorithm)
            .map(|(_, hex)| hex.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    const HELLO_MD5: &str = "5d41402abc4b2a76b9719d911017c592";

    fn hash(expected: &[ExpectedDigest]) -> Result<String, DigestMismatch> {
        let mut hasher = StreamHasher::new(expected.iter().map(|e| e.algorithm));
        hasher.update(b"he");
        hasher.update(b"llo");
        hasher.finish(expected)
    }

    #[test]
    fn verifies_every_expected_algorithm() {
        assert_eq!(hash(&[]).as_deref(), Ok(HELLO_SHA256));
        let good = [
            ExpectedDigest::new(DigestAlgorithm::Sha256, &HELLO_SHA256.to_uppercase()),
            ExpectedDigest::new(DigestAlgorithm::Md5, HELLO_MD5),
        ];
        assert_eq!(hash(&good).as_deref(), Ok(HELLO_SHA256));
        let bad_sha = [ExpectedDigest::new(
            DigestAlgorithm::Sha256,
            &"0".repeat(64),
        )];
        assert_eq!(
            hash(&bad_sha).expect_err("mismatch").algorithm,
            DigestAlgorithm::Sha256
        );
        let bad_md5 = [ExpectedDigest::new(DigestAlgorithm::Md5, &"0".repeat(32))];
        assert_eq!(
            hash(&bad_md5).expect_err("mismatch").algorithm,
            DigestAlgorithm::Md5
        );
    }

    #[test]
    fn a_digest_of_an_algorithm_not_hashed_fails() {
        let mut hasher = StreamHasher::new([DigestAlgorithm::Sha1]);
        hasher.update(b"hello");
        let md5 = [ExpectedDigest::new(DigestAlgorithm::Md5, HELLO_MD5)];
        assert_eq!(
            hasher.finish(&md5).expect_err("not computed").actual,
            "(not computed)"
        );
    }
}
