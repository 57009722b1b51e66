//! A snapshot's bytes in pieces of at most [`PIECE`] bytes: what the head
//! encodes its machine into, seals and stores piece by piece, sends to a
//! follower and receives from the leader (openraft's `SnapshotData`).
//!
//! Why pieces: a snapshot in one buffer (27 MB at 100,000 actors, copied
//! once more to add its meta and again to seal it) was freed after each
//! write, and glibc's malloc raises its mmap threshold to the largest
//! mmapped block it frees (up to 32 MiB): every later large buffer came
//! from the heap and its pages stayed resident. No buffer here is larger
//! than a piece, so none moves the threshold past a piece.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The size of a piece: all but the last are this long.
#[cfg(not(test))]
pub(crate) const PIECE: usize = 1 << 20;
/// Small in tests, so that small snapshots span pieces.
#[cfg(test)]
pub(crate) const PIECE: usize = 256;

/// Bytes in pieces, with a position for reading, writing and seeking (as a
/// file would have). All pieces but the last are full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pieces {
    /// The length of a full piece.
    piece: usize,
    pieces: Vec<Vec<u8>>,
    len: usize,
    pos: usize,
}

impl Default for Pieces {
    fn default() -> Self {
        Self::with_piece(PIECE)
    }
}

impl Pieces {
    /// Empty, in pieces of `piece` bytes (at least 1).
    pub(crate) fn with_piece(piece: usize) -> Self {
        Self {
            piece: piece.max(1),
            pieces: Vec::new(),
            len: 0,
            pos: 0,
        }
    }

    /// `bytes` copied into pieces of [`PIECE`] bytes.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Self {
        Self::from_bytes_in(bytes, PIECE)
    }

    /// `bytes` copied into pieces of `piece` bytes.
    pub(crate) fn from_bytes_in(bytes: &[u8], piece: usize) -> Self {
        let mut out = Self::with_piece(piece);
        out.pieces = bytes.chunks(out.piece).map(<[u8]>::to_vec).collect();
        out.len = bytes.len();
        out
    }

    /// Pieces as stored: none empty, each but the last as long as the
    /// first, none longer.
    ///
    /// # Errors
    ///
    /// Which piece breaks that rule.
    pub(crate) fn from_pieces(pieces: Vec<Vec<u8>>) -> Result<Self, String> {
        let piece = pieces.first().map_or(PIECE, Vec::len);
        let last = pieces.len().saturating_sub(1);
        if let Some((i, p)) = pieces
            .iter()
            .enumerate()
            .find(|(i, p)| p.is_empty() || p.len() > piece || (*i < last && p.len() != piece))
        {
            return Err(format!(
                "piece {i} of the snapshot is {} bytes, its first {piece}",
                p.len()
            ));
        }
        let len = pieces.iter().map(Vec::len).sum();
        Ok(Self {
            piece: piece.max(1),
            pieces,
            len,
            pos: 0,
        })
    }

    /// Its length, bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The pieces, in order.
    pub(crate) fn pieces(&self) -> &[Vec<u8>] {
        &self.pieces
    }

    /// A reader over all of it from the start (whatever the position).
    pub(crate) fn reader(&self) -> Reader<'_> {
        Reader {
            current: &[],
            rest: self.pieces.iter(),
        }
    }

    /// The unread rest of the piece at the position (empty at the end).
    fn at_pos(&self) -> &[u8] {
        if self.pos >= self.len {
            return &[];
        }
        let (i, at) = (self.pos / self.piece, self.pos % self.piece);
        self.pieces.get(i).and_then(|p| p.get(at..)).unwrap_or(&[])
    }
}

impl Read for Pieces {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let src = self.at_pos();
        let n = src.len().min(buf.len());
        buf[..n].copy_from_slice(&src[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Pieces {
    /// Writes at the position, over what is there and on past the end;
    /// refused past the end (no gap is ever filled).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a snapshot write at {} past its end at {}",
                    self.pos, self.len
                ),
            ));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let (i, at) = (self.pos / self.piece, self.pos % self.piece);
        if i == self.pieces.len() {
            self.pieces.push(Vec::with_capacity(self.piece));
        }
        let piece = self.piece;
        let Some(p) = self.pieces.get_mut(i) else {
            return Err(io::Error::other("a snapshot piece is missing"));
        };
        let n = buf.len().min(piece - at);
        let over = p.len().saturating_sub(at).min(n);
        p[at..at + over].copy_from_slice(&buf[..over]);
        p.extend_from_slice(&buf[over..n]);
        self.pos += n;
        self.len = self.len.max(self.pos);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Pieces {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(at) => (0, i128::from(at)),
            SeekFrom::End(d) => (self.len, i128::from(d)),
            SeekFrom::Current(d) => (self.pos, i128::from(d)),
        };
        let pos = i128::try_from(base)
            .ok()
            .and_then(|b| b.checked_add(delta))
            .and_then(|p| usize::try_from(p).ok())
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "a snapshot seek out of range")
            })?;
        self.pos = pos;
        Ok(pos as u64)
    }
}

impl tokio::io::AsyncRead for Pieces {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let src = this.at_pos();
        let n = src.len().min(buf.remaining());
        buf.put_slice(&src[..n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Pieces {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(self.get_mut().write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncSeek for Pieces {
    fn start_seek(self: Pin<&mut Self>, to: SeekFrom) -> io::Result<()> {
        self.get_mut().seek(to).map(drop)
    }

    fn poll_complete(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Poll::Ready(Ok(self.pos as u64))
    }
}

/// Reads [`Pieces`] from the start, as one stream (what the machine is
/// decoded from).
pub(crate) struct Reader<'a> {
    current: &'a [u8],
    rest: std::slice::Iter<'a, Vec<u8>>,
}

impl Read for Reader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rest.next() {
                Some(p) => self.current = p,
                None => return Ok(0),
            }
        }
        self.current.read(buf)
    }

    fn read_exact(&mut self, mut buf: &mut [u8]) -> io::Result<()> {
        // Most reads are a few bytes inside the current piece.
        if let Some((head, tail)) = self.current.split_at_checked(buf.len()) {
            buf.copy_from_slice(head);
            self.current = tail;
            return Ok(());
        }
        while !buf.is_empty() {
            match self.read(buf)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => buf = &mut buf[n..],
            }
        }
        Ok(())
    }
}
