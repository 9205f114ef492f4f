//! Who may use the admin service: the platform admin's password (argon2,
//! hashed once at start-up), server-side sessions for browsers and
//! scripts, admin JWTs signed with the gateway's `JWT_SECRET_KEY`, and
//! Basic auth only where `API_ALLOW_BASIC_AUTH=true`.

use super::throttle::Throttle;
use crate::config::{Secret, Settings};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// The cookie a browser session travels in.
pub const SESSION_COOKIE: &str = "mcp_admin_session";

/// The claim that makes a JWT signed with `JWT_SECRET_KEY` an admin
/// credential, as in ContextForge: `"is_admin": true`.
pub const ADMIN_CLAIM: &str = "is_admin";

/// Sessions held at most; the oldest go first (a login flood cannot grow
/// memory without bound).
const MAX_SESSIONS: usize = 10_000;

/// What the authenticator is configured with, taken from [`Settings`].
#[derive(Clone)]
pub struct AuthConfig {
    pub required: bool,
    pub admin_email: String,
    pub admin_password: Option<Secret>,
    pub basic_user: String,
    pub basic_password: Option<Secret>,
    pub allow_basic: bool,
    pub jwt_secret: Option<Secret>,
    pub jwt_algorithm: Algorithm,
    pub jwt_audience: Option<String>,
    pub jwt_issuer: Option<String>,
    pub session_ttl: Duration,
    pub cookie_secure: bool,
    /// The argon2 cost; tests lower it.
    pub argon2_params: argon2::Params,
}

impl AuthConfig {
    pub fn from_settings(s: &Settings) -> Self {
        AuthConfig {
            required: s.auth.auth_required,
            admin_email: s.admin.platform_admin_email.clone(),
            admin_password: s.admin.platform_admin_password.clone(),
            basic_user: s.admin.basic_auth_user.clone(),
            basic_password: s.admin.basic_auth_password.clone(),
            allow_basic: s.admin.service.allow_basic_auth,
            jwt_secret: s.auth.jwt.secret.clone(),
            jwt_algorithm: s.auth.jwt.algorithm,
            jwt_audience: s.auth.jwt.audience.clone(),
            jwt_issuer: s.auth.jwt.issuer.clone(),
            session_ttl: s.admin.session_ttl,
            cookie_secure: s.admin.service.cookie_secure,
            argon2_params: argon2::Params::default(),
        }
    }
}

/// Someone the admin service let in; `actor` is what the audit log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub actor: String,
    pub via: Via,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The session cookie: writes must come from the admin page's origin.
    Cookie,
    Bearer,
    Jwt,
    Basic,
    /// `AUTH_REQUIRED=false`.
    Open,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    Invalid,
    Throttled(Duration),
    /// No `PLATFORM_ADMIN_PASSWORD`: nobody can log in.
    Disabled,
    /// The operating system's random source failed: no token is safe.
    NoRandomness,
}

struct Session {
    actor: String,
    expires: Instant,
}

pub struct Authenticator {
    config: AuthConfig,
    /// PHC string of the admin password.
    password_hash: Option<String>,
    basic_digest: Option<[u8; 32]>,
    jwt: Option<(DecodingKey, Validation)>,
    /// By SHA-256 of the token: a memory dump does not yield live tokens.
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    throttle: Throttle,
}

#[derive(Deserialize)]
struct AdminClaims {
    sub: Option<String>,
    email: Option<String>,
    #[serde(default)]
    is_admin: bool,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Authenticator {
    /// Hashes the admin password (the one slow step, done once).
    pub fn new(config: AuthConfig) -> Result<Self, String> {
        let password_hash = match &config.admin_password {
            Some(pw) => Some(hash_password(pw.expose(), &config.argon2_params)?),
            None => None,
        };
        let basic_digest = config
            .basic_password
            .as_ref()
            .map(|pw| digest(format!("{}:{}", config.basic_user, pw.expose()).as_bytes()));
        let jwt = config.jwt_secret.as_ref().map(|secret| {
            let mut validation = Validation::new(config.jwt_algorithm);
            // The data plane's tolerance for clock skew.
            validation.leeway = 60;
            validation.validate_nbf = true;
            let mut required = vec!["exp"];
            match &config.jwt_audience {
                Some(aud) => {
                    validation.set_audience(&[aud]);
                    required.push("aud");
                }
                None => validation.validate_aud = false,
            }
            if let Some(iss) = &config.jwt_issuer {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            validation.set_required_spec_claims(&required);
            (
                DecodingKey::from_secret(secret.expose().as_bytes()),
                validation,
            )
        });
        Ok(Authenticator {
            config,
            password_hash,
            basic_digest,
            jwt,
            sessions: Mutex::default(),
            throttle: Throttle::default(),
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Checks the email and password; on success opens a session and
    /// returns its token. Slow on purpose (argon2): call off the reactor.
    pub fn login(
        &self,
        email: &str,
        password: &str,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<String, LoginError> {
        let Some(hash) = &self.password_hash else {
            return Err(LoginError::Disabled);
        };
        let keys = throttle_keys(email, client);
        // Counted as a failure before the (slow) check, so that attempts
        // sent together cannot all pass the throttle; a success clears it.
        self.throttle
            .attempt(&keys, now)
            .map_err(LoginError::Throttled)?;
        let email_ok = normalise_email(email)
            .as_bytes()
            .ct_eq(normalise_email(&self.config.admin_email).as_bytes());
        // Verified even for a wrong email, so the time taken does not tell
        // whether the account exists.
        let password_ok = verify_password(hash, password, &self.config.argon2_params);
        if bool::from(email_ok) && password_ok {
            self.throttle.succeed(&keys);
            self.open_session(&self.config.admin_email, now)
                .ok_or(LoginError::NoRandomness)
        } else {
            Err(LoginError::Invalid)
        }
    }

    fn open_session(&self, actor: &str, now: Instant) -> Option<String> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).ok()?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k)
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            digest(token.as_bytes()),
            Session {
                actor: actor.to_string(),
                expires: now + self.config.session_ttl,
            },
        );
        Some(token)
    }

    /// The session's actor, if the token names a live session.
    pub fn session(&self, token: &str, now: Instant) -> Option<String> {
        let key = digest(token.as_bytes());
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get(&key) {
            Some(s) if s.expires > now => Some(s.actor.clone()),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn logout(&self, token: &str) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.remove(&digest(token.as_bytes())).is_some()
    }

    /// An admin JWT's `sub` (or `email`).
    pub fn admin_jwt(&self, token: &str) -> Result<String, String> {
        let Some((key, validation)) = &self.jwt else {
            return Err("admin JWTs need JWT_SECRET_KEY".into());
        };
        let data = jsonwebtoken::decode::<AdminClaims>(token, key, validation)
            .map_err(|e| format!("invalid token: {e}"))?;
        let claims = data.claims;
        if !claims.is_admin {
            return Err(format!("the token lacks \"{ADMIN_CLAIM}\": true"));
        }
        claims
            .sub
            .filter(|s| !s.is_empty())
            .or(claims.email.filter(|e| !e.is_empty()))
            .ok_or_else(|| "the token has neither sub nor email".to_string())
    }

    /// `user:password` from a Basic header, compared in constant time.
    pub fn basic(&self, user_colon_password: &[u8]) -> Result<String, String> {
        if !self.config.allow_basic {
            return Err(
                "Basic authentication is disabled for the admin API (API_ALLOW_BASIC_AUTH=false); \
                 log in at /auth/login and use the bearer token"
                    .into(),
            );
        }
        let Some(expected) = &self.basic_digest else {
            return Err("Basic authentication needs BASIC_AUTH_PASSWORD".into());
        };
        if bool::from(digest(user_colon_password).ct_eq(expected)) {
            Ok(self.config.basic_user.clone())
        } else {
            Err("invalid Basic credentials".into())
        }
    }
}

fn normalise_email(email: &str) -> String {
    email.trim().to_ascii_lowercase()
}

fn throttle_keys(email: &str, client: Option<IpAddr>) -> Vec<String> {
    let mut keys = vec![format!("account:{}", normalise_email(email))];
    if let Some(ip) = client {
        keys.push(format!("addr:{ip}"));
    }
    keys
}

fn argon2(params: &argon2::Params) -> Argon2<'static> {
    Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params.clone(),
    )
}

fn hash_password(password: &str, params: &argon2::Params) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no random salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2(params)
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash PLATFORM_ADMIN_PASSWORD: {e}"))
}

fn verify_password(hash: &str, password: &str, params: &argon2::Params) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            argon2(params)
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Cheap argon2 parameters for tests: the cost is not what they test.
#[cfg(test)]
pub fn test_params() -> argon2::Params {
    argon2::Params::new(8, 1, 1, None).expect("valid argon2 parameters")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::throttle::FREE_FAILURES;

    fn config() -> AuthConfig {
        AuthConfig {
            required: true,
            admin_email: "admin@example.com".into(),
            admin_password: Some(Secret::new("correct horse")),
            basic_user: "admin".into(),
            basic_password: Some(Secret::new("basic-pw")),
            allow_basic: false,
            jwt_secret: Some(Secret::new("k".repeat(32))),
            jwt_algorithm: Algorithm::HS256,
            jwt_audience: None,
            jwt_issuer: None,
            session_ttl: Duration::from_secs(60),
            cookie_secure: false,
            argon2_params: test_params(),
        }
    }

    #[test]
    fn login_opens_a_session_that_expires_and_can_be_revoked() {
        let auth = Authenticator::new(config()).unwrap();
        let t0 = Instant::now();
        let token = auth
            .login("Admin@Example.com ", "correct horse", None, t0)
            .unwrap();
        assert_eq!(token.len(), 43, "256 bits, base64url");
        assert_eq!(
            auth.session(&token, t0).as_deref(),
            Some("admin@example.com")
        );
        assert_eq!(auth.session(&token, t0 + Duration::from_secs(60)), None);
        let again = auth
            .login("admin@example.com", "correct horse", None, t0)
            .unwrap();
        assert_ne!(again, token);
        assert!(auth.logout(&again));
        assert_eq!(auth.session(&again, t0), None);
    }

    #[test]
    fn the_password_is_held_hashed() {
        let auth = Authenticator::new(config()).unwrap();
        let hash = auth.password_hash.as_deref().unwrap();
        assert!(hash.starts_with("$argon2id$") && !hash.contains("correct horse"));
    }

    #[test]
    fn wrong_credentials_fail_and_are_throttled() {
        let auth = Authenticator::new(config()).unwrap();
        let t0 = Instant::now();
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        assert_eq!(
            auth.login("admin@example.com", "wrong", ip, t0),
            Err(LoginError::Invalid)
        );
        assert_eq!(
            auth.login("eve@example.com", "correct horse", ip, t0),
            Err(LoginError::Invalid)
        );
        for _ in 2..FREE_FAILURES {
            let _ = auth.login("admin@example.com", "wrong", ip, t0);
        }
        assert!(matches!(
            auth.login("admin@example.com", "correct horse", ip, t0),
            Err(LoginError::Throttled(_))
        ));
    }

    /// Guesses sent together all used to pass the throttle before the
    /// first had failed: argon2 takes long enough for hundreds to be in
    /// flight.
    #[test]
    fn concurrent_guesses_cannot_outrun_the_throttle() {
        let mut c = config();
        // Slow enough that every thread is past the throttle check before
        // the first verification ends, if the check does not reserve.
        c.argon2_params = argon2::Params::new(4096, 3, 1, None).unwrap();
        let auth = std::sync::Arc::new(Authenticator::new(c).unwrap());
        let guesses = 16;
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(guesses));
        let t0 = Instant::now();
        let threads: Vec<_> = (0..guesses)
            .map(|i| {
                let (auth, barrier) = (auth.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    auth.login("admin@example.com", &format!("guess {i}"), None, t0)
                })
            })
            .collect();
        let outcomes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let checked = outcomes
            .iter()
            .filter(|o| **o == Err(LoginError::Invalid))
            .count();
        assert_eq!(
            checked, FREE_FAILURES as usize,
            "passwords checked out of {guesses} concurrent guesses: {outcomes:?}"
        );
    }

    #[test]
    fn no_password_means_no_login() {
        let mut c = config();
        c.admin_password = None;
        let auth = Authenticator::new(c).unwrap();
        assert_eq!(
            auth.login("admin@example.com", "", None, Instant::now()),
            Err(LoginError::Disabled)
        );
    }

    #[test]
    fn basic_is_refused_unless_allowed() {
        let auth = Authenticator::new(config()).unwrap();
        assert!(auth
            .basic(b"admin:basic-pw")
            .unwrap_err()
            .contains("API_ALLOW_BASIC_AUTH"));
        let mut c = config();
        c.allow_basic = true;
        let auth = Authenticator::new(c).unwrap();
        assert_eq!(auth.basic(b"admin:basic-pw").unwrap(), "admin");
        assert!(auth.basic(b"admin:wrong").is_err());
    }
}
