//! Opening an IMAP session: TCP, then TLS from the first byte (`tls`), after `STARTTLS`
//! (`starttls`), or none (`none`, for a local server), then the greeting and `LOGIN`.
//! TLS is tokio-rustls with the process's ring provider and the webpki roots.

use channels::email::{ImapSettings, TlsMode};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Any stream an IMAP session runs over.
pub trait ImapStream: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> ImapStream for T {}

/// A logged-in session.
pub type Session = async_imap::Session<Box<dyn ImapStream>>;

/// Why a mailbox could not be read; every one ends the connection and is retried with
/// backoff, except [`ImapError::Config`] which waits for the account to change.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// TCP or TLS could not be set up, or the server took too long.
    #[error("connecting to {host}: {reason}")]
    Connect {
        /// The server.
        host: String,
        /// Why.
        reason: String,
    },
    /// The server refused the login.
    #[error("login refused: {0}")]
    Login(String),
    /// The server refused a command or the connection broke.
    #[error("IMAP: {0}")]
    Protocol(#[from] async_imap::error::Error),
    /// The folder has no UIDVALIDITY (the server is not usable).
    #[error("the folder reports no UIDVALIDITY")]
    NoUidValidity,
    /// The database failed; reading stops until it answers again.
    #[error(transparent)]
    Store(#[from] crate::db::StoreError),
    /// The committer refused the work (shutting down, overloaded).
    #[error("commit: {0}")]
    Commit(String),
}

/// Connects, secures the connection as configured, and logs in within `timeout`.
pub async fn connect(s: &ImapSettings, timeout: Duration) -> Result<Session, ImapError> {
    let fail = |reason: String| ImapError::Connect {
        host: format!("{}:{}", s.host, s.port),
        reason,
    };
    let opened = tokio::time::timeout(timeout, open(s)).await;
    let client = opened.map_err(|_| fail(format!("no answer within {timeout:?}")))??;
    let login = client.login(&s.username, s.password.expose());
    match tokio::time::timeout(timeout, login).await {
        Err(_) => Err(fail(format!("no login answer within {timeout:?}"))),
        Ok(Err((e, _))) => Err(ImapError::Login(e.to_string())),
        Ok(Ok(session)) => Ok(session),
    }
}

async fn open(s: &ImapSettings) -> Result<async_imap::Client<Box<dyn ImapStream>>, ImapError> {
    let fail = |reason: String| ImapError::Connect {
        host: format!("{}:{}", s.host, s.port),
        reason,
    };
    let tcp = TcpStream::connect((s.host.as_str(), s.port))
        .await
        .map_err(|e| fail(e.to_string()))?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn ImapStream> = match s.tls {
        TlsMode::None => Box::new(tcp),
        TlsMode::Tls => Box::new(tls(tcp, &s.host).await.map_err(fail)?),
        TlsMode::Starttls => {
            let mut plain = async_imap::Client::new(tcp);
            greeting(&mut plain).await?;
            plain.run_command_and_check_ok("STARTTLS", None).await?;
            Box::new(tls(plain.into_inner(), &s.host).await.map_err(fail)?)
        }
    };
    let mut client = async_imap::Client::new(stream);
    if s.tls != TlsMode::Starttls {
        greeting(&mut client).await?;
    }
    Ok(client)
}

async fn greeting<T: ImapStream>(client: &mut async_imap::Client<T>) -> Result<(), ImapError> {
    match client.read_response().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ImapError::Protocol(
            async_imap::error::Error::ConnectionLost,
        )),
        Err(e) => Err(ImapError::Protocol(e.into())),
    }
}

async fn tls(
    tcp: TcpStream,
    host: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("server name `{host}`: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))
}
