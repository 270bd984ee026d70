//! TLS on the client listener: the server configuration built from the
//! `[security]` files, swapped whole on reload, and what a handshake tells
//! of the client.
//!
//! The certificate chain, the key and the client CA are PEM files read when
//! the broker starts and again on SIGHUP ([`ServerTls::reload`]). A connection
//! takes the configuration current at its accept and keeps it: a reload
//! changes what new connections see and drops none. A reload that fails (a
//! file missing or not PEM, a key that does not match) keeps the old
//! configuration.
//!
//! Client certificates: with `tls_client_auth = "requested"` a client may
//! present one, with `"required"` it must; either way a certificate that the
//! CA in `tls_client_ca_file` did not sign fails the handshake. A verified
//! certificate's subject is the connection's principal (see
//! [`tls_subject`](super::tls_subject)).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::config::{ClientAuth, SecuritySettings};

/// Why the TLS files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client CA in {path}: {what}")]
    ClientCa { path: PathBuf, what: String },
}

/// Where the TLS files are and how client certificates are treated.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Empty: no client certificate is asked for.
    pub client_ca: PathBuf,
    pub client_auth: ClientAuth,
}

impl TlsFiles {
    /// The files `settings` names; `None` when the listener is plain.
    pub fn from_settings(settings: &SecuritySettings) -> Option<TlsFiles> {
        settings.tls().then(|| TlsFiles {
            cert: settings.tls_cert_file.clone().into(),
            key: settings.tls_key_file.clone().into(),
            client_ca: settings.tls_client_ca_file.clone().into(),
            client_auth: settings.tls_client_auth,
        })
    }

    /// Reads the files and builds the server configuration.
    ///
    /// # Errors
    ///
    /// A file cannot be read or holds no usable PEM, the key does not match
    /// the certificate, or the client CA is unusable.
    pub fn load(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let chain = read_certs(&self.cert)?;
        let key = read(&self.key)?;
        let key = PrivateKeyDer::from_pem_slice(&key)
            .map_err(|err| TlsError::Pem { path: self.key.clone(), what: format!("no private key: {err}") })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
        let builder = if self.client_auth == ClientAuth::None || self.client_ca.as_os_str().is_empty() {
            builder.with_no_client_auth()
        } else {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(&self.client_ca)? {
                roots
                    .add(cert)
                    .map_err(|err| TlsError::ClientCa { path: self.client_ca.clone(), what: err.to_string() })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match self.client_auth {
                ClientAuth::Requested => verifier.allow_unauthenticated(),
                ClientAuth::Required | ClientAuth::None => verifier,
            };
            let verifier = verifier
                .build()
                .map_err(|err| TlsError::ClientCa { path: self.client_ca.clone(), what: err.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        };
        let config = builder.with_single_cert(chain, key)?;
        Ok(Arc::new(config))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::Pem { path: path.to_owned(), what: err.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: path.to_owned(), what: "no certificate".into() });
    }
    Ok(certs)
}

/// The listener's TLS: the files and the configuration new connections get.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    /// Loads the files once.
    ///
    /// # Errors
    ///
    /// As [`TlsFiles::load`].
    pub fn new(files: TlsFiles) -> Result<ServerTls, TlsError> {
        let config = files.load()?;
        Ok(ServerTls { files, current: RwLock::new(config) })
    }

    /// The configuration for a connection accepted now.
    pub fn config(&self) -> Arc<ServerConfig> {
        // A poisoned lock still holds a whole configuration: the only write
        // is one assignment.
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Reads the files again; on success new connections use them, on
    /// failure the configuration in use stays.
    ///
    /// # Errors
    ///
    /// As [`TlsFiles::load`]; nothing changed.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = self.files.load()?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = config;
        Ok(())
    }
}
