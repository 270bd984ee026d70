//! TLS for a client connection: whom to trust, which certificate to show
//! (mutual TLS), and the name the broker's certificate must carry.
//!
//! ```no_run
//! use herald_client::{Client, ConnectOptions, TlsOptions};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let tls = TlsOptions::from_ca_file("ca.pem")?
//!     .client_cert_files("alice.pem", "alice-key.pem")?
//!     .server_name("broker.example.com");
//! let options = ConnectOptions::default().tls(tls);
//! let client = Client::connect_with_options("broker.example.com:9093", "my-app", options).await?;
//! println!("{:?}", client.features().principal);
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// How a client speaks TLS to the broker.
#[derive(Clone)]
pub struct TlsOptions {
    roots: Arc<RootCertStore>,
    /// The client certificate chain and its key, for mutual TLS.
    identity: Option<Arc<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>>,
    server_name: Option<String>,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("roots", &self.roots.len())
            .field("client_cert", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsOptions {
    /// Trusts the certificate authorities in `roots`.
    pub fn from_roots(roots: RootCertStore) -> TlsOptions {
        TlsOptions { roots: Arc::new(roots), identity: None, server_name: None }
    }

    /// Trusts the certificate authorities in the PEM file `path`.
    ///
    /// # Errors
    ///
    /// The file cannot be read or holds no usable certificate.
    pub fn from_ca_file(path: impl AsRef<Path>) -> io::Result<TlsOptions> {
        let path = path.as_ref();
        let mut roots = RootCertStore::empty();
        for cert in read_certs(path)? {
            roots.add(cert).map_err(|err| invalid(path, &err))?;
        }
        Ok(TlsOptions::from_roots(roots))
    }

    /// Shows the broker the certificate chain and key of these PEM files
    /// (mutual TLS: the broker takes the certificate's subject as this
    /// connection's principal).
    ///
    /// # Errors
    ///
    /// A file cannot be read or holds no certificate or no key.
    pub fn client_cert_files(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> io::Result<TlsOptions> {
        let chain = read_certs(cert.as_ref())?;
        let key_path = key.as_ref();
        let pem = std::fs::read(key_path).map_err(|err| named(key_path, err))?;
        let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|err| invalid(key_path, &err))?;
        self.identity = Some(Arc::new((chain, key)));
        Ok(self)
    }

    /// Shows the broker this certificate chain and key.
    #[must_use]
    pub fn client_cert(mut self, chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> TlsOptions {
        self.identity = Some(Arc::new((chain, key)));
        self
    }

    /// The name the broker's certificate must carry. By default the IP
    /// address connected to (a certificate names it among its subject
    /// alternative names, or this must be set).
    #[must_use]
    pub fn server_name(mut self, name: impl Into<String>) -> TlsOptions {
        self.server_name = Some(name.into());
        self
    }

    /// These options verifying `name` unless a name was set already.
    pub(crate) fn default_server_name(mut self, name: &str) -> TlsOptions {
        self.server_name.get_or_insert_with(|| name.to_string());
        self
    }

    /// The rustls configuration of a connection, and the server name to
    /// verify for a broker at `ip`.
    pub(crate) fn connector(&self, ip: IpAddr) -> io::Result<(tokio_rustls::TlsConnector, ServerName<'static>)> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(self.roots.clone());
        let config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some(identity) => {
                builder.with_client_auth_cert(identity.0.clone(), identity.1.clone_key()).map_err(io::Error::other)?
            }
        };
        let name = match &self.server_name {
            Some(name) => ServerName::try_from(name.clone())
                .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, format!("server name `{name}`: {err}")))?,
            None => ServerName::IpAddress(ip.into()),
        };
        Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
    }
}

fn read_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).map_err(|err| named(path, err))?;
    let certs =
        CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>().map_err(|err| invalid(path, &err))?;
    if certs.is_empty() {
        return Err(invalid(path, &"no certificate"));
    }
    Ok(certs)
}

fn named(path: &Path, err: io::Error) -> io::Error {
    io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

fn invalid(path: &Path, err: &dyn fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {err}", path.display()))
}
