//! Certificates for the tests, made with rcgen: a certificate authority
//! and the broker and client certificates it signs.

use std::path::PathBuf;

use herald::client::TlsOptions;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority that signs the broker's and the clients'
/// certificates, its files in a directory of their own.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    dir: tempfile::TempDir,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.pem()).unwrap();
        Ca { cert, key, dir }
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Signs a certificate for `subject` (most general first), for a
    /// broker (`localhost` and 127.0.0.1; it serves clients, and is a
    /// client of the other brokers of a cluster) or a client; returns the
    /// paths of its certificate and key files, named `name`.
    pub fn issue(&self, name: &str, subject: &[(DnType, &str)], server: bool) -> (PathBuf, PathBuf) {
        let sans = if server { vec!["localhost".to_string(), "127.0.0.1".to_string()] } else { Vec::new() };
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.extended_key_usages = if server {
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (cert_file, key_file) =
            (self.dir.path().join(format!("{name}.pem")), self.dir.path().join(format!("{name}-key.pem")));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }

    pub fn broker_files(&self) -> (PathBuf, PathBuf) {
        self.issue("broker", &[(DnType::CommonName, "localhost")], true)
    }

    /// Client options that trust this CA.
    pub fn trusted(&self) -> TlsOptions {
        TlsOptions::from_ca_file(self.ca_file()).unwrap()
    }
}
