//! TLS server configuration: the configured PEM certificate and key, or a self-signed
//! certificate generated once into `<data>/tls/`, behind a holder that SIGHUP reloads.

use std::fs::{self, OpenOptions};
use std::io::{self, BufReader, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// Why no TLS configuration could be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: no PEM certificate found", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{}: no PEM private key found", path.display())]
    NoKey { path: PathBuf },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot generate a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("certificate or key not usable: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Where the certificate comes from.
#[derive(Debug)]
enum CertSource {
    Configured {
        certificate: PathBuf,
        key: PathBuf,
    },
    /// Generated into `dir` with these subject alternative names when missing.
    SelfSigned {
        dir: PathBuf,
        names: Vec<String>,
    },
}

/// The current TLS server configuration. Clones share it: after [`TlsStore::reload`], new
/// handshakes use the new configuration, connections already open keep theirs.
#[derive(Clone)]
pub struct TlsStore {
    source: Arc<CertSource>,
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl std::fmt::Debug for TlsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStore")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl TlsStore {
    /// Loads the configured certificate, or generates (once) and loads a self-signed one
    /// in `<data_dir>/tls/` naming localhost, 127.0.0.1, ::1 and `hostname`.
    pub fn load(config: &TlsConfig, data_dir: &Path, hostname: &str) -> Result<TlsStore, TlsError> {
        let source = match (&config.certificate, &config.private_key) {
            (Some(certificate), Some(key)) => CertSource::Configured {
                certificate: certificate.clone(),
                key: key.clone(),
            },
            _ => {
                let mut names: Vec<String> =
                    vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
                if !names.iter().any(|n| n == hostname) {
                    names.push(hostname.to_owned());
                }
                CertSource::SelfSigned {
                    dir: data_dir.join("tls"),
                    names,
                }
            }
        };
        let config = build(&source)?;
        Ok(TlsStore {
            source: Arc::new(source),
            current: Arc::new(RwLock::new(config)),
        })
    }

    /// Reads the certificate and key again. On error the previous configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.source)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        tracing::info!("tls certificate reloaded");
        Ok(())
    }

    /// The configuration new handshakes use.
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config())
    }

    /// The PEM certificate file in use.
    pub fn certificate_path(&self) -> PathBuf {
        match &*self.source {
            CertSource::Configured { certificate, .. } => certificate.clone(),
            CertSource::SelfSigned { dir, .. } => dir.join("cert.pem"),
        }
    }
}

fn build(source: &CertSource) -> Result<Arc<ServerConfig>, TlsError> {
    let (certificate, key) = match source {
        CertSource::Configured { certificate, key } => (certificate.clone(), key.clone()),
        CertSource::SelfSigned { dir, names } => ensure_self_signed(dir, names)?,
    };
    let certs = read_certificates(&certificate)?;
    let key = read_key(&key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// The generated certificate and key paths, generating them when either is missing.
fn ensure_self_signed(dir: &Path, names: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }

    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| TlsError::Write {
            path: dir.to_owned(),
            source,
        })?;
    let generated = rcgen::generate_simple_self_signed(names.to_vec())?;
    // The key first: a certificate without its key would be taken as complete next time.
    write_private(&key_path, generated.key_pair.serialize_pem().as_bytes())?;
    write_file(&cert_path, generated.cert.pem().as_bytes(), 0o644)?;
    tracing::info!(path = %cert_path.display(), "generated a self-signed tls certificate");
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), TlsError> {
    write_file(path, contents, 0o600)
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), TlsError> {
    let fail = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(fail)?;
    // The mode given to open() applies only to a new file.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(fail)?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(fail)
}

fn open(path: &Path) -> Result<BufReader<fs::File>, TlsError> {
    fs::File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut open(path)?)
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut open(path)?)
        .map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: path.to_owned(),
        })
}

/// A client configuration trusting only the certificate in `cert_pem`, for tests.
#[cfg(test)]
pub(crate) fn test_client_config(cert_pem: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certificates(cert_pem).expect("test certificate") {
        roots.add(cert).expect("a valid test certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let store = TlsStore::load(&TlsConfig::default(), dir.path(), "mx.test").unwrap();
        let cert = fs::read(dir.path().join("tls/cert.pem")).unwrap();
        let mode = fs::metadata(dir.path().join("tls/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let again = TlsStore::load(&TlsConfig::default(), dir.path(), "mx.test").unwrap();
        assert_eq!(fs::read(again.certificate_path()).unwrap(), cert);
        store.reload().unwrap();
    }

    #[test]
    fn configured_files_are_used_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        TlsStore::load(&TlsConfig::default(), dir.path(), "mx.test").unwrap();
        let config = TlsConfig {
            certificate: Some(dir.path().join("tls/cert.pem")),
            private_key: Some(dir.path().join("tls/key.pem")),
        };
        let store = TlsStore::load(&config, Path::new("/nonexistent"), "mx.test").unwrap();

        // A broken key on reload keeps the previous configuration.
        fs::write(dir.path().join("tls/key.pem"), "not a key").unwrap();
        let before = store.config();
        let err = store.reload().unwrap_err();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
        assert!(Arc::ptr_eq(&before, &store.config()));

        let missing = TlsConfig {
            certificate: Some(dir.path().join("missing.pem")),
            private_key: Some(dir.path().join("tls/key.pem")),
        };
        let err = TlsStore::load(&missing, dir.path(), "mx.test").unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
}
