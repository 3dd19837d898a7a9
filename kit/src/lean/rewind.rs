//! A connection with the bytes already read put back in front: what the
//! sniffer hands to hyper when the first bytes are not a lean Connect.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// `inner`, read after `prefix`.
#[derive(Debug)]
pub struct Rewind<T> {
    prefix: Vec<u8>,
    read: usize,
    inner: T,
}

impl<T> Rewind<T> {
    pub fn new(prefix: Vec<u8>, inner: T) -> Self {
        Self { prefix, read: 0, inner }
    }

    /// The connection itself.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Rewind<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read < this.prefix.len() {
            let left = &this.prefix[this.read..];
            let n = left.len().min(buf.remaining());
            buf.put_slice(&left[..n]);
            this.read += n;
            if this.read == this.prefix.len() {
                // Read through: the prefix's memory goes.
                this.prefix = Vec::new();
                this.read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Rewind<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn the_prefix_comes_first_then_the_connection_both_ways() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut rewound = Rewind::new(b"PRI * HTTP/2.0".to_vec(), near);
        far.write_all(b"\r\n\r\nSM").await.unwrap();
        let mut got = vec![0u8; 20];
        rewound.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"PRI * HTTP/2.0\r\n\r\nSM");
        rewound.write_all(b"settings").await.unwrap();
        let mut back = [0u8; 8];
        far.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"settings");
    }

    #[tokio::test]
    async fn a_small_reader_gets_the_prefix_in_pieces() {
        let (near, _far) = tokio::io::duplex(8);
        let mut rewound = Rewind::new(b"abcdef".to_vec(), near);
        let mut piece = [0u8; 4];
        let n = rewound.read(&mut piece).await.unwrap();
        assert_eq!(&piece[..n], b"abcd");
        let n = rewound.read(&mut piece).await.unwrap();
        assert_eq!(&piece[..n], b"ef");
    }
}
