//! Connecting: tokio-postgres over rustls (ring), with libpq's TLS modes. The host name is
//! sent as SNI (Neon routes on it). A [`ConnectError`] means the database could not be
//! reached or refused us (a run that "could not run", exit 3), unlike a query that failed.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres::{Client, NoTls};

use super::url::{ConnSpec, SslMode};

/// The database could not be reached, refused the login, or the TLS setup failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot connect to {display}: {reason}")]
pub struct ConnectError {
    /// The connection as shown (password masked).
    pub display: String,
    pub reason: String,
}

/// Opens a connection and drives it on its own task. The task ends when the client drops.
pub async fn connect(spec: &ConnSpec) -> Result<Client, ConnectError> {
    let mut config = spec.config.clone();
    let work = async {
        match spec.ssl {
            SslMode::Disable => {
                config.ssl_mode(PgSslMode::Disable);
                let (client, conn) = config.connect(NoTls).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
            mode => {
                config.ssl_mode(if mode == SslMode::Prefer {
                    PgSslMode::Prefer
                } else {
                    PgSslMode::Require
                });
                let tls = rustls_connector(spec).map_err(Connect::Tls)?;
                let (client, conn) = config.connect(tls).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
        }
    };
    let result: Result<Client, Connect> = match tokio::time::timeout(
        spec.connect_timeout
            .saturating_add(std::time::Duration::from_secs(1)),
        work,
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(Connect::Timeout),
    };
    result.map_err(|e| ConnectError {
        display: spec.display.clone(),
        reason: e.describe(),
    })
}

enum Connect {
    Pg(tokio_postgres::Error),
    Tls(String),
    Timeout,
}

impl From<tokio_postgres::Error> for Connect {
    fn from(e: tokio_postgres::Error) -> Connect {
        Connect::Pg(e)
    }
}

impl Connect {
    fn describe(&self) -> String {
        match self {
            Connect::Pg(e) => {
                let text = describe(e);
                // a listener that answers, but not in PostgreSQL's protocol
                if e.as_db_error().is_none()
                    && ["unexpected message", "invalid message", "unexpected EOF", "bytes remaining on stream"]
                        .iter()
                        .any(|m| text.contains(m))
                {
                    format!("{text}: what answers there does not speak PostgreSQL's protocol")
                } else {
                    text
                }
            }
            Connect::Tls(e) => format!("TLS setup: {e}"),
            Connect::Timeout => "timed out: nothing answered as PostgreSQL (a server that is not PostgreSQL, or a firewall dropping the packets)".into(),
        }
    }
}

/// A tokio-postgres error as one specific line: the server's message and code when it sent
/// one, else the cause chain ("connection refused", "server does not support TLS").
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{} ({})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            s.push_str(": ");
            s.push_str(detail);
        }
        return s;
    }
    crate::diagnostic::error_chain(e)
}

/// The TLS connector for `spec`'s mode (also used by replication connections).
pub(crate) fn rustls_connector(
    spec: &ConnSpec,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(
        spec.ssl, spec,
    )?))
}

fn tls_config(mode: SslMode, spec: &ConnSpec) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(roots(spec)?);
            let webpki =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| e.to_string())?;
            let verifier: Arc<dyn ServerCertVerifier> = if mode == SslMode::VerifyCa {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    Ok(config)
}

fn roots(spec: &ConnSpec) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    match &spec.root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
                store
                    .add(cert)
                    .map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
        }
    }
    if store.is_empty() {
        return Err(
            "no trusted root certificates (set sslrootcert or install ca-certificates)".into(),
        );
    }
    Ok(store)
}

/// `sslmode=require`: encrypted, not authenticated (libpq's meaning). Handshake signatures
/// are still checked.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
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

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the name may differ.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end: &CertificateDer<'_>,
        inter: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end, inter, name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
