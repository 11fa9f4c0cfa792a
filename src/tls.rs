//! TLS set-up for the HTTP sinks: exactly one rustls crypto provider (ring), installed once per process.

/// Installs ring as the process's rustls provider (idempotent; a provider installed earlier wins).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
