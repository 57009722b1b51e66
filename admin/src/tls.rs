//! The admin API's TLS: an ECDSA P-256 certificate chain (browsers accept
//! no Ed25519 server certificates, so the mesh's own identities cannot
//! serve HTTPS) under a separate admin CA. `swarm admin tls` (or
//! `swarm cert issue`) makes the CA once, in the CA directory, and one
//! certificate per node for its admin host names and addresses; operators
//! trust `admin-ca.crt` in their browser or with `curl --cacert`.
//!
//! The private keys are PKCS#8 DER; the CLI seals them at rest with the
//! node's keyring like every other private file.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Why a certificate could not be made or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Generating or signing failed.
    #[error("cannot make the admin certificate: {0}")]
    Make(String),
    /// The chain or key does not parse or fit.
    #[error("the admin TLS certificate or key is not usable: {0}")]
    Use(String),
}

fn make(e: impl std::fmt::Display) -> TlsError {
    TlsError::Make(e.to_string())
}

/// The years a certificate is valid from (this year's start to that of
/// the year after next).
fn validity(params: &mut CertificateParams, years: i32) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Accurate to a day or so; the certificate starts on January 1st.
    let year = 1970 + i32::try_from(secs / 31_556_952).unwrap_or(0);
    params.not_before = rcgen::date_time_ymd(year, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
}

fn ca_params(cluster: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("Swarm admin CA ({cluster})"));
    dn.push(DnType::OrganizationName, "Swarm");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, 10);
    params
}

/// The admin CA: its key and the parameters its certificate was made with.
pub struct AdminCa {
    cluster: String,
    key: KeyPair,
}

impl std::fmt::Debug for AdminCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminCa({})", self.cluster)
    }
}

impl AdminCa {
    /// A new CA for `cluster`, with its self-signed certificate (PEM).
    ///
    /// # Errors
    ///
    /// [`TlsError::Make`] if no key could be generated.
    pub fn generate(cluster: &str) -> Result<(Self, String), TlsError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(make)?;
        let cert = ca_params(cluster).self_signed(&key).map_err(make)?;
        Ok((
            Self {
                cluster: cluster.to_owned(),
                key,
            },
            cert.pem(),
        ))
    }

    /// The CA of `cluster` from its key (PKCS#8 DER, as [`AdminCa::key_der`]
    /// gave it).
    ///
    /// # Errors
    ///
    /// [`TlsError::Use`] if the key is not a P-256 PKCS#8 key.
    pub fn from_key_der(cluster: &str, der: &[u8]) -> Result<Self, TlsError> {
        let der = PrivatePkcs8KeyDer::from(der.to_vec());
        let key = KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_ECDSA_P256_SHA256)
            .map_err(|e| TlsError::Use(e.to_string()))?;
        Ok(Self {
            cluster: cluster.to_owned(),
            key,
        })
    }

    /// Its private key, PKCS#8 DER (to seal).
    pub fn key_der(&self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(self.key.serialize_der())
    }

    /// A server certificate for `name`, valid for `hosts` (DNS names or IP
    /// addresses), signed by this CA: the chain (leaf then CA, PEM) and
    /// the leaf's private key (PKCS#8 DER).
    ///
    /// # Errors
    ///
    /// [`TlsError::Make`] if a host is not a valid name or signing fails.
    pub fn issue(
        &self,
        name: &str,
        hosts: &[String],
    ) -> Result<(String, zeroize::Zeroizing<Vec<u8>>), TlsError> {
        let ca = ca_params(&self.cluster);
        let issuer = Issuer::from_params(&ca, &self.key);
        let ca_pem = ca.self_signed(&self.key).map_err(make)?.pem();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{name} (Swarm admin API)"));
        params.distinguished_name = dn;
        for host in hosts {
            let san = match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(host.clone().try_into().map_err(make)?),
            };
            params.subject_alt_names.push(san);
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, 2);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(make)?;
        let cert = params.signed_by(&key, &issuer).map_err(make)?;
        Ok((
            format!("{}{ca_pem}", cert.pem()),
            zeroize::Zeroizing::new(key.serialize_der()),
        ))
    }
}

/// The server side of TLS for a chain (PEM) and its key (PKCS#8 DER, or
/// PEM): TLS 1.2 and 1.3, ring's ciphers, no client certificates.
///
/// # Errors
///
/// [`TlsError::Use`] if the chain is empty, or the key does not parse or
/// match.
pub fn server_config(chain_pem: &str, key: &[u8]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let bad = |e: String| TlsError::Use(e);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| bad(format!("certificate chain: {e:?}")))?;
    if chain.is_empty() {
        return Err(bad("the certificate file holds no certificate".into()));
    }
    let key: PrivateKeyDer<'static> = if key.starts_with(b"-----BEGIN") {
        PrivateKeyDer::from_pem_slice(key).map_err(|e| bad(format!("private key: {e:?}")))?
    } else {
        PrivatePkcs8KeyDer::from(key.to_vec()).into()
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad(e.to_string()))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_chain_serves_and_a_restored_ca_issues_alike() {
        let (ca, ca_pem) = AdminCa::generate("test").unwrap();
        let hosts = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
        let (chain, key) = ca.issue("node-1", &hosts).unwrap();
        assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
        server_config(&chain, &key).unwrap();
        let again = AdminCa::from_key_der("test", &ca.key_der()).unwrap();
        let (chain, key) = again.issue("node-2", &hosts).unwrap();
        server_config(&chain, &key).unwrap();
        assert!(ca_pem.contains("BEGIN CERTIFICATE"));
        assert!(server_config("", &key).is_err());
        assert!(server_config(&chain, b"not a key").is_err());
    }
}
