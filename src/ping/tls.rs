//! TLS around any heartbeat protocol: a rustls client configuration (the system's roots, or the CAs
//! of `--ca FILE`, or no verification with `--insecure`), the server name (SNI, and the name the
//! certificate must carry), and handshake failures in one sentence each.
//!
//! The crypto provider is graviola (pure Rust, by rustls's author): ring and aws-lc need a C
//! toolchain for each target, which the Windows and macOS checks built here from Linux do not have.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::strategy::Protocol;

/// What a connection needs to speak TLS: the configuration and the name the server must prove.
#[derive(Debug, Clone)]
pub struct Tls {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

impl Tls {
    /// A client session for one connection.
    pub fn session(&self) -> Result<rustls::ClientConnection, rustls::Error> {
        rustls::ClientConnection::new(Arc::clone(&self.config), self.name.clone())
    }
}

/// Where the trusted certificates come from.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// The operating system's root store.
    System,
    /// The CA certificates of a PEM file.
    CaFile(&'a Path),
    /// No verification at all.
    Insecure,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls_graviola::default_provider())
}

/// The ALPN protocols offered for a heartbeat protocol: HTTP/2 must be agreed by ALPN over TLS.
pub fn alpn(protocol: Protocol) -> Vec<Vec<u8>> {
    match protocol {
        Protocol::H2 => vec![b"h2".to_vec()],
        Protocol::Http | Protocol::Websocket => vec![b"http/1.1".to_vec()],
        _ => Vec::new(),
    }
}

/// Build the TLS setup for `host` (the name as the user wrote it, without port). Errors are one
/// sentence saying what to do.
pub fn setup(host: &str, trust: Trust<'_>, protocol: Protocol) -> Result<Tls, String> {
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
        .map_err(|_| format!("--tls: '{host}' is not a valid server name for TLS"))?
        .to_owned();
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("--tls: {e}"))?;
    let mut config = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth(),
        Trust::System => {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(
                    "--tls: no system root certificates found: give the server's CA with --ca FILE"
                        .into(),
                );
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::CaFile(path) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("--ca {}: cannot read it: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    format!("--ca {}: not a PEM certificate file: {e}", path.display())
                })?;
                roots.add(cert).map_err(|e| {
                    format!(
                        "--ca {}: a certificate it holds is unusable: {e}",
                        path.display()
                    )
                })?;
            }
            if roots.is_empty() {
                return Err(format!(
                    "--ca {}: no certificate in it (a PEM file of CA certificates is needed)",
                    path.display()
                ));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    config.alpn_protocols = alpn(protocol);
    Ok(Tls {
        config: Arc::new(config),
        name,
    })
}

/// A failed handshake in one sentence: what was wrong and what to do.
pub fn describe(e: &rustls::Error, name: &ServerName<'_>) -> String {
    use rustls::Error as E;
    let name = name.to_str();
    match e {
        E::InvalidCertificate(c) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the server's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the server's certificate is not valid yet (check this machine's clock)".into()
            }
            CertificateError::UnknownIssuer => {
                "the server's certificate is issued by a CA this machine does not trust (self-signed?): give the CA with --ca FILE, or --insecure for a test server".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!(
                    "the server's certificate is not valid for the name '{name}' (connect by the name the certificate carries)"
                )
            }
            other => format!("the server's certificate was refused: {other:?}"),
        },
        E::AlertReceived(a) => format!("the server refused the handshake (TLS alert {a:?})"),
        E::InvalidMessage(_) | E::PeerSentOversizedRecord => {
            "the server does not speak TLS on this port (its answer is not a TLS record)".into()
        }
        E::NoApplicationProtocol => {
            "the server agrees to none of the application protocols offered by ALPN".into()
        }
        other => other.to_string(),
    }
}

/// `--insecure`: every certificate is accepted, but signatures are still checked, so the handshake
/// itself stays sound.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
