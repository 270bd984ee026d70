//! A client connection's two halves, plain TCP or TLS.
//!
//! The plain halves are tokio's own, so that the plain path stays what it
//! was: the reader copies a large frame's body on the bulk pool straight
//! from the socket (see `bulk_read`), and the writer's vectored writes are
//! one system call each. Under TLS the bytes on the socket are encrypted:
//! everything is read through the TLS stream, on the connection's arbiter,
//! and a vectored write is encrypted into TLS records, which the writer
//! flushes after each batch of frames.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// The read half of a client connection.
pub enum ClientRead {
    Plain(OwnedReadHalf),
    Tls(ReadHalf<TlsStream<TcpStream>>),
}

/// The write half of a client connection.
pub enum ClientWrite {
    Plain(OwnedWriteHalf),
    Tls(WriteHalf<TlsStream<TcpStream>>),
}

/// Splits a plain connection.
pub fn plain(stream: TcpStream) -> (ClientRead, ClientWrite) {
    let (read, write) = stream.into_split();
    (ClientRead::Plain(read), ClientWrite::Plain(write))
}

/// Splits a connection whose TLS handshake is done.
pub fn tls(stream: TlsStream<TcpStream>) -> (ClientRead, ClientWrite) {
    let (read, write) = tokio::io::split(stream);
    (ClientRead::Tls(read), ClientWrite::Tls(write))
}

impl AsyncRead for ClientRead {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientRead::Plain(read) => Pin::new(read).poll_read(cx, buf),
            ClientRead::Tls(read) => Pin::new(read).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientWrite {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientWrite::Plain(write) => Pin::new(write).poll_write(cx, buf),
            ClientWrite::Tls(write) => Pin::new(write).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientWrite::Plain(write) => Pin::new(write).poll_write_vectored(cx, bufs),
            ClientWrite::Tls(write) => Pin::new(write).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientWrite::Plain(write) => write.is_write_vectored(),
            ClientWrite::Tls(write) => write.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientWrite::Plain(write) => Pin::new(write).poll_flush(cx),
            ClientWrite::Tls(write) => Pin::new(write).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientWrite::Plain(write) => Pin::new(write).poll_shutdown(cx),
            ClientWrite::Tls(write) => Pin::new(write).poll_shutdown(cx),
        }
    }
}
