//! Password hashing with argon2id, stored as a PHC string that records the algorithm, version,
//! parameters and salt, so that verification never depends on today's defaults.
//!
//! Every function here works in caller-provided argon2 memory ([`new_memory`]: 19 MiB), so a
//! thread that hashes reuses one block of memory for all its hashes instead of allocating (and
//! leaving the allocator to keep) 19 MiB per call. Each call costs tens of milliseconds of CPU
//! on purpose: only the threads of [`super::hash_pool`] call them.

use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use super::AuthError;

/// Memory cost in KiB (19 MiB, the OWASP minimum for argon2id).
const MEMORY_KIB: u32 = 19_456;
/// Number of passes.
const ITERATIONS: u32 = 2;
/// Degree of parallelism.
const PARALLELISM: u32 = 1;
/// Salt length in bytes.
const SALT_LEN: usize = 16;
/// Hash output length in bytes.
const OUTPUT_LEN: usize = 32;

/// The argon2 working memory one hashing thread keeps: enough for [`MEMORY_KIB`].
pub fn new_memory() -> Vec<Block> {
    vec![Block::default(); MEMORY_KIB as usize]
}

fn params() -> Result<Params, AuthError> {
    Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, Some(OUTPUT_LEN))
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Hashes `password` with argon2id (m=19456 KiB, t=2, p=1) and a fresh random salt in
/// `memory`, returning the PHC string, e.g. `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`.
pub fn hash_password(password: &str, memory: &mut [Block]) -> Result<String, AuthError> {
    let params = params()?;
    let salt_bytes: [u8; SALT_LEN] = rand::random();
    let mut out = [0u8; OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(password.as_bytes(), &salt_bytes, &mut out, memory)
        .map_err(|e| AuthError::Hash(e.to_string()))?;
    phc_string(&params, &salt_bytes, &out)
}

/// A PHC string with today's parameters whose hash matches no password anyone can type: login
/// verifies against it when the user does not exist, so the answer takes the same time.
pub fn unmatchable_phc() -> Result<String, AuthError> {
    let salt: [u8; SALT_LEN] = rand::random();
    let hash: [u8; OUTPUT_LEN] = rand::random();
    phc_string(&params()?, &salt, &hash)
}

fn phc_string(params: &Params, salt: &[u8], hash: &[u8]) -> Result<String, AuthError> {
    let hash_error = |e: argon2::password_hash::Error| AuthError::Hash(e.to_string());
    let salt = SaltString::encode_b64(salt).map_err(hash_error)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(hash_error)?,
        salt: Some(Salt::from(&salt)),
        hash: Some(Output::new(hash).map_err(hash_error)?),
    };
    Ok(phc.to_string())
}

/// Whether `password` matches the PHC string `phc`, using the parameters recorded in `phc` and
/// `memory` (the comparison of the hashes is constant-time). Returns false for a wrong password
/// and for any PHC string that does not parse, names an algorithm other than argon2, or asks
/// for more memory than `memory` holds.
pub fn verify_password(password: &str, phc: &str, memory: &mut [Block]) -> bool {
    recompute(password, phc, memory).is_some_and(|(computed, expected)| computed == expected)
}

/// The hash of `password` under `phc`'s parameters and salt, and the hash `phc` holds.
fn recompute(password: &str, phc: &str, memory: &mut [Block]) -> Option<(Output, Output)> {
    let parsed = PasswordHash::new(phc).ok()?;
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).ok()?;
    let expected = parsed.hash?;
    let mut salt_buf = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt_buf).ok()?;
    let argon2 = Argon2::new(algorithm, version, params);
    let computed = Output::init_with(expected.len(), |out| {
        argon2
            .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut *memory)
            .map_err(Into::into)
    })
    .ok()?;
    Some((computed, expected))
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    #[test]
    fn hash_then_verify() {
        let mut memory = new_memory();
        let phc = hash_password("correct horse battery", &mut memory).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse battery", &phc, &mut memory));
        assert!(!verify_password("correct horse batterY", &phc, &mut memory));
        assert!(!verify_password("", &phc, &mut memory));
    }

    #[test]
    fn matches_the_argon2_crate_both_ways_with_reused_memory() {
        let mut memory = new_memory();
        // Ours verifies under the crate's own verifier...
        let ours = hash_password("same password", &mut memory).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"same password", &parsed)
                .is_ok()
        );
        // ...and a hash made by the crate (older parameters too) verifies in our memory, which
        // still holds the last hash's blocks.
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let small = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(4096, 3, 1, None).unwrap(),
        );
        let theirs = small
            .hash_password(b"same password", &salt)
            .unwrap()
            .to_string();
        assert!(verify_password("same password", &theirs, &mut memory));
        assert!(!verify_password("other password", &theirs, &mut memory));
    }

    #[test]
    fn salts_differ() {
        let mut memory = new_memory();
        let a = hash_password("same password", &mut memory).unwrap();
        let b = hash_password("same password", &mut memory).unwrap();
        assert_ne!(a, b);
        assert!(verify_password("same password", &a, &mut memory));
        assert!(verify_password("same password", &b, &mut memory));
    }

    #[test]
    fn garbage_phc_unmatchable_phc_and_oversized_memory_are_false() {
        let mut memory = new_memory();
        let unmatchable = unmatchable_phc().unwrap();
        for phc in [
            "",
            "not a phc",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$",
            "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo",
            "$argon2id$v=19$m=19456,t=2,p=1$!!!$###",
            // Twice the memory this thread keeps: refused, not allocated.
            "$argon2id$v=19$m=38912,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            unmatchable.as_str(),
        ] {
            assert!(!verify_password("password", phc, &mut memory), "{phc:?}");
        }
    }
}
