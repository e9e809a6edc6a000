//! TLS for the fleet connection: the server's self-signed certificate (rcgen, created on first
//! need in `<state_dir>/fleet/server.{crt,key}`, 0600) and the agent's verifier that pins its
//! SHA-256 fingerprint (no CA; the handshake signature is still verified).

use crate::ident::{ensure_dir, fleet_dir, sha256_hex, write_private};
use crate::FleetError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider,
};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

/// The server's certificate and key.
pub struct ServerCert {
    /// DER certificate.
    pub cert: CertificateDer<'static>,
    /// DER key.
    pub key: PrivateKeyDer<'static>,
    /// SHA-256 of the DER certificate, lower-case hex.
    pub fingerprint: String,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads `<state_dir>/fleet/server.{crt,key}`, creating them the first time.
pub fn server_cert(state_dir: &Path) -> Result<ServerCert, FleetError> {
    let dir = fleet_dir(state_dir);
    ensure_dir(&dir)?;
    let crt = dir.join("server.crt");
    let key = dir.join("server.key");
    if !crt.exists() || !key.exists() {
        let ck = rcgen::generate_simple_self_signed(vec!["palisade-fleet".to_string()])
            .map_err(|e| FleetError::Tls(format!("creating the server certificate: {e}")))?;
        // Key first: a crash in between leaves no certificate without its key.
        write_private(&key, ck.signing_key.serialize_pem().as_bytes())?;
        write_private(&crt, ck.cert.pem().as_bytes())?;
    }
    let cert = CertificateDer::from_pem_file(&crt)
        .map_err(|e| FleetError::Tls(format!("{}: {e}", crt.display())))?;
    let k = PrivateKeyDer::from_pem_file(&key)
        .map_err(|e| FleetError::Tls(format!("{}: {e}", key.display())))?;
    Ok(ServerCert {
        fingerprint: sha256_hex(&cert),
        cert,
        key: k,
    })
}

/// The listener's TLS configuration.
pub fn server_config(c: &ServerCert) -> Result<Arc<rustls::ServerConfig>, FleetError> {
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| FleetError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![c.cert.clone()], c.key.clone_key())
        .map_err(|e| FleetError::Tls(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// Accepts exactly the certificate whose SHA-256 is `fingerprint`.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if sha256_hex(end_entity) == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the fleet server's certificate does not match the pinned fingerprint".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The agent's TLS configuration: trusts only the pinned certificate.
pub fn client_config(fingerprint: &str) -> Result<Arc<rustls::ClientConfig>, FleetError> {
    let p = provider();
    let cfg = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| FleetError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            fingerprint: fingerprint.to_string(),
            provider: p,
        }))
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_is_made_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let a = server_cert(d.path()).unwrap();
        let b = server_cert(d.path()).unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 64);
        for f in ["server.crt", "server.key"] {
            let m = std::fs::metadata(d.path().join("fleet").join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(m & 0o777, 0o600, "{f}");
        }
        server_config(&a).unwrap();
        client_config(&a.fingerprint).unwrap();
    }
}
