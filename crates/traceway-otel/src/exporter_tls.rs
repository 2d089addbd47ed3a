//! TLS of the OTLP exporters: the roots they trust and the certificate they present, from the
//! standard `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`, `_CLIENT_CERTIFICATE` and `_CLIENT_KEY`.
//!
//! Without a certificate file the exporters trust the bundled Mozilla roots (`webpki-roots`),
//! as OpenTelemetry's Python exporters trust `certifi`'s; a file replaces them, as it does
//! there, so a collector behind a private CA is trusted and nothing else is. The files are read
//! and checked when the configuration is resolved, so a bad one stops start-up with the
//! variable's name instead of failing every export later.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, first_of};
use crate::env::{self, Env};

/// The TLS settings of the OTLP exporters (used only for `https://` endpoints).
#[derive(Clone, Default, PartialEq)]
pub struct ExporterTls {
    ca: Option<PemFile>,
    identity: Option<(PemFile, PemFile)>,
}

/// A PEM file named by a variable, as read at start-up.
#[derive(Clone, PartialEq)]
struct PemFile {
    var: &'static str,
    path: String,
    pem: Arc<[u8]>,
}

impl fmt::Debug for ExporterTls {
    // Paths only: the key file's bytes are a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExporterTls")
            .field("ca", &self.ca.as_ref().map(|c| &c.path))
            .field(
                "client_certificate",
                &self.identity.as_ref().map(|(c, _)| &c.path),
            )
            .finish()
    }
}

impl ExporterTls {
    /// Reads and checks the files the certificate variables name (`_TRACES_` ones win).
    pub(crate) fn from_env(env: &dyn Env) -> Result<ExporterTls, ConfigError> {
        let ca = file_of(
            env,
            &[
                env::OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
                env::OTEL_EXPORTER_OTLP_CERTIFICATE,
            ],
        )?;
        let cert = file_of(
            env,
            &[
                env::OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE,
                env::OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
            ],
        )?;
        let key = file_of(
            env,
            &[
                env::OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
                env::OTEL_EXPORTER_OTLP_CLIENT_KEY,
            ],
        )?;
        let identity = match (cert, key) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::Missing {
                    var: env::OTEL_EXPORTER_OTLP_CLIENT_KEY,
                    why: "a client certificate needs its private key",
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::Missing {
                    var: env::OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
                    why: "a client key needs its certificate",
                });
            }
        };
        let tls = ExporterTls { ca, identity };
        if tls.ca.is_some() || tls.identity.is_some() {
            // Building the rustls configuration checks everything the files must be.
            tls.rustls()?;
        }
        Ok(tls)
    }

    /// The CA file that replaces the bundled roots, if one is set.
    pub fn ca_file(&self) -> Option<&str> {
        self.ca.as_ref().map(|c| c.path.as_str())
    }

    /// The client certificate file presented to the collector, if one is set.
    pub fn client_certificate_file(&self) -> Option<&str> {
        self.identity.as_ref().map(|(c, _)| c.path.as_str())
    }

    /// The rustls client configuration of the OTLP/HTTP exporters (HTTP/2 and HTTP/1.1 by ALPN).
    pub(crate) fn rustls(&self) -> Result<rustls::ClientConfig, ConfigError> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca {
            Some(ca) => {
                for cert in certificates(ca)? {
                    roots.add(cert).map_err(|e| {
                        ca.bad(format!("holds a certificate that cannot be a root ({e})"))
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder =
            rustls::ClientConfig::builder_with_provider(crate::exporter::crypto_provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| ConfigError::Tls {
                    var: env::OTEL_EXPORTER_OTLP_CERTIFICATE,
                    reason: e.to_string(),
                })?
                .with_root_certificates(roots);
        let mut config = match &self.identity {
            Some((cert, key)) => {
                let chain = certificates(cert)?;
                let private = PrivateKeyDer::from_pem_slice(&key.pem)
                    .map_err(|e| key.bad(format!("holds no PEM private key ({e})")))?;
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|e| cert.bad(format!("cannot be used with the client key ({e})")))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The tonic TLS settings of the OTLP/gRPC exporters.
    pub(crate) fn tonic(&self) -> tonic::transport::ClientTlsConfig {
        let mut config = tonic::transport::ClientTlsConfig::new();
        config = match &self.ca {
            Some(ca) => config.ca_certificate(tonic::transport::Certificate::from_pem(&*ca.pem)),
            None => config.with_webpki_roots(),
        };
        if let Some((cert, key)) = &self.identity {
            config = config.identity(tonic::transport::Identity::from_pem(&*cert.pem, &*key.pem));
        }
        config
    }
}

impl PemFile {
    fn bad(&self, problem: String) -> ConfigError {
        ConfigError::BadFile {
            var: self.var,
            path: self.path.clone(),
            problem,
        }
    }
}

/// The file named by the first set variable of `names`, read whole.
fn file_of(env: &dyn Env, names: &[&'static str]) -> Result<Option<PemFile>, ConfigError> {
    let Some((var, path)) = first_of(env, names) else {
        return Ok(None);
    };
    let pem = std::fs::read(&path).map_err(|e| ConfigError::BadFile {
        var,
        path: path.clone(),
        problem: format!("cannot be read ({e})"),
    })?;
    Ok(Some(PemFile {
        var,
        path,
        pem: pem.into(),
    }))
}

/// Every certificate of a PEM file; at least one.
fn certificates(file: &PemFile) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(&file.pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file.bad(format!("is not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(file.bad("holds no PEM certificate".to_owned()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use std::collections::HashMap;
    use traceway_testkit::tls_front::material;

    fn tls(pairs: &[(&str, &str)]) -> Result<ExporterTls, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        ExporterTls::from_env(&map)
    }

    fn path(name: &str) -> String {
        material(name).to_str().unwrap().to_owned()
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        tls(pairs).unwrap_err().to_string()
    }

    #[test]
    fn nothing_set_is_the_bundled_roots_without_a_client_certificate() {
        let t = tls(&[]).unwrap();
        assert_eq!(t, ExporterTls::default());
        assert_eq!((t.ca_file(), t.client_certificate_file()), (None, None));
        let config = t.rustls().unwrap();
        assert!(!config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn files_are_read_and_traces_variables_win() {
        let ca = path("ca.pem");
        let t = tls(&[
            (env::OTEL_EXPORTER_OTLP_CERTIFICATE, "/nowhere/general.pem"),
            (env::OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE, &ca),
            (
                env::OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
                &path("client.pem"),
            ),
            (
                env::OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
                &path("client.key"),
            ),
        ])
        .unwrap();
        assert_eq!(t.ca_file(), Some(ca.as_str()));
        assert_eq!(
            t.client_certificate_file(),
            Some(path("client.pem").as_str())
        );
        assert!(t.rustls().unwrap().client_auth_cert_resolver.has_certs());
        // The key's path may show; its bytes never do.
        let shown = format!("{t:?}");
        assert!(
            shown.contains("ca.pem") && !shown.contains("PRIVATE"),
            "{shown}"
        );
    }

    #[test]
    fn bad_files_stop_start_up_naming_the_variable_and_the_file() {
        let missing = error(&[(env::OTEL_EXPORTER_OTLP_CERTIFICATE, "/nowhere/ca.pem")]);
        assert!(
            missing
                .starts_with("OTEL_EXPORTER_OTLP_CERTIFICATE: \"/nowhere/ca.pem\" cannot be read"),
            "{missing}"
        );
        // A key file is not a certificate file.
        let key = path("client.key");
        let not_a_cert = error(&[(env::OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE, &key)]);
        assert_eq!(
            not_a_cert,
            format!("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: \"{key}\" holds no PEM certificate")
        );
        let cert = path("client.pem");
        let not_a_key = error(&[
            (env::OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, &cert),
            (env::OTEL_EXPORTER_OTLP_CLIENT_KEY, &cert),
        ]);
        assert!(
            not_a_key.starts_with(&format!(
                "OTEL_EXPORTER_OTLP_CLIENT_KEY: \"{cert}\" holds no PEM private key"
            )),
            "{not_a_key}"
        );
        // The server's key does not belong to the client's certificate.
        let mismatched = error(&[
            (env::OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, &cert),
            (env::OTEL_EXPORTER_OTLP_CLIENT_KEY, &path("upstream.key")),
        ]);
        assert!(
            mismatched.starts_with(&format!(
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: \"{cert}\" cannot be used with the client key"
            )),
            "{mismatched}"
        );
    }

    #[test]
    fn a_client_certificate_and_its_key_come_together() {
        assert_eq!(
            error(&[(
                env::OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE,
                &path("client.pem")
            )]),
            "OTEL_EXPORTER_OTLP_CLIENT_KEY is not set (a client certificate needs its private key)"
        );
        assert_eq!(
            error(&[(
                env::OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY,
                &path("client.key")
            )]),
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE is not set (a client key needs its certificate)"
        );
    }
}
