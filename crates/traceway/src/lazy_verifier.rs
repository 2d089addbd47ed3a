//! The platform's TLS certificate verifier for upstream connections, made on first use.
//!
//! Loading the system's root certificates (`rustls-platform-verifier` reads and parses every
//! file under `/etc/ssl/certs`) took ~8 ms of CPU, most of a cold start; a gateway whose
//! upstreams are all plain HTTP never needs them. The roots are loaded on a background thread
//! when the client is built, so the first HTTPS handshake does not wait for them either, and a
//! machine without any root certificates still starts (its HTTPS upstreams then fail with the
//! verifier's error).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_platform_verifier::Verifier;
use std::sync::{Arc, OnceLock};

/// A [`ServerCertVerifier`] that creates the platform verifier the first time it is needed.
#[derive(Debug)]
pub(crate) struct LazyVerifier {
    provider: Arc<CryptoProvider>,
    verifier: OnceLock<Result<Verifier, rustls::Error>>,
}

impl LazyVerifier {
    /// A verifier for `provider`'s algorithms whose roots start loading on a background thread.
    pub(crate) fn new(provider: Arc<CryptoProvider>) -> Arc<LazyVerifier> {
        let lazy = Arc::new(LazyVerifier {
            provider,
            verifier: OnceLock::new(),
        });
        let warm = Arc::clone(&lazy);
        // Without the thread the first handshake loads the roots itself: slower, not wrong.
        let _ = std::thread::Builder::new()
            .name("traceway-tls-roots".to_owned())
            .spawn(move || {
                let _ = warm.verifier();
            });
        lazy
    }

    fn verifier(&self) -> Result<&Verifier, rustls::Error> {
        self.verifier
            .get_or_init(|| Verifier::new(Arc::clone(&self.provider)))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for LazyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls13_signature(message, cert, dss)
    }

    // Asked when the ClientHello is written, before any certificate: the provider's
    // algorithms, which are what the platform verifier answers too, so the roots can wait.
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
