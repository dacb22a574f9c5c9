//! A client connection as hyper sees it: the socket behind the [`Screen`], the header timeout,
//! and closing after a refusal without resetting the connection.

use super::screen::{Refusal, Screen, HEADER_TIMEOUT};
use hyper::rt::{Read, ReadBufCursor, Write};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// After a refusal: how long, and how many bytes, of what the client still sends are read and
/// dropped before the connection is closed (so that the kernel does not reset the connection
/// before the client has read the refusal).
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;

/// What a connection's I/O, its service and its task share.
#[derive(Debug)]
pub struct ConnState {
    start: Instant,
    /// Milliseconds from `start` to the last byte read or written.
    last_activity: AtomicU64,
    /// Requests hyper has handed to the service so far.
    requests: AtomicU64,
    refusal: Mutex<Option<(u64, Refusal)>>,
}

impl Default for ConnState {
    fn default() -> Self {
        ConnState {
            start: Instant::now(),
            last_activity: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            refusal: Mutex::new(None),
        }
    }
}

impl ConnState {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity.store(ms, Ordering::Relaxed);
    }

    /// When the connection last read or wrote a byte (its start if never).
    pub fn last_activity(&self) -> Instant {
        self.start + Duration::from_millis(self.last_activity.load(Ordering::Relaxed))
    }

    /// Called by the service once per request, in order: the refusal to answer instead, if this
    /// request is the stand-in for a refused one.
    pub fn next_request(&self) -> Option<Refusal> {
        let index = self.requests.fetch_add(1, Ordering::Relaxed);
        let refusal = self.refusal.lock().unwrap_or_else(PoisonError::into_inner);
        match *refusal {
            Some((at, refusal)) if at == index => Some(refusal),
            _ => None,
        }
    }
}

/// A client connection behind the [`Screen`]: what hyper reads and writes.
pub struct Screened {
    stream: TcpStream,
    screen: Screen,
    state: Arc<ConnState>,
    /// Screened bytes hyper has not read yet, from `sent` on.
    ready: Vec<u8>,
    sent: usize,
    eof: bool,
    /// The header timeout, then the linger deadline.
    timer: Option<Pin<Box<Sleep>>>,
    /// When the head being read was started (the connection's start for the first request).
    head_since: Option<Instant>,
    /// Closing after a refusal: our side is shut, input is drained until this deadline.
    linger: Option<(Instant, usize)>,
}

impl Screened {
    pub fn new(stream: TcpStream, state: Arc<ConnState>) -> Screened {
        let start = state.start;
        Screened {
            stream,
            screen: Screen::default(),
            state,
            ready: Vec::new(),
            sent: 0,
            eof: false,
            timer: None,
            head_since: Some(start),
            linger: None,
        }
    }

    /// True once `deadline` has passed, polling a timer for it otherwise (so that the task is
    /// woken then).
    fn expired(&mut self, cx: &mut Context<'_>, deadline: Instant) -> bool {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx).is_ready()
    }

    fn screen(&mut self, bytes: &[u8]) {
        self.screen.feed(bytes, &mut self.ready);
        if let Some(refusal) = self.screen.take_refusal() {
            *self
                .state
                .refusal
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(refusal);
        }
        self.head_since = match (self.screen.head_pending(), self.head_since) {
            (false, _) => None,
            (true, Some(since)) => Some(since),
            (true, None) => Some(Instant::now()),
        };
    }
}

impl Read for Screened {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if let Some(pending) = this.ready.get(this.sent..).filter(|p| !p.is_empty()) {
                let n = pending.len().min(buf.remaining());
                buf.put_slice(pending.get(..n).unwrap_or_default());
                this.sent += n;
                return Poll::Ready(Ok(()));
            }
            this.ready.clear();
            this.sent = 0;
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.screen.stopped() {
                // hyper closes after answering the stand-in; the connection task times out
                // anything else.
                return Poll::Pending;
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.stream).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => this.eof = true,
                Poll::Ready(Ok(())) => {
                    this.state.touch();
                    let filled = read.filled();
                    this.screen(filled);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    if let Some(since) = this.head_since {
                        if this.expired(cx, since + HEADER_TIMEOUT) {
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "request head not received in time",
                            )));
                        }
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Write for Screened {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.stream).poll_write(cx, buf))?;
        this.state.touch();
        Poll::Ready(Ok(written))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = ready!(Pin::new(&mut this.stream).poll_write_vectored(cx, bufs))?;
        this.state.touch();
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    /// Shuts our side; after a refusal, also reads and drops what the client still sends for a
    /// moment, so that closing with unread input does not reset the connection before the
    /// client has read the refusal.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.linger.is_none() {
            ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
            if !this.screen.stopped() || this.eof {
                return Poll::Ready(Ok(()));
            }
            this.linger = Some((Instant::now() + LINGER_TIME, 0));
        }
        let Some((deadline, mut drained)) = this.linger else {
            return Poll::Ready(Ok(()));
        };
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.stream).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if !read.filled().is_empty() && drained < LINGER_BYTES => {
                    drained += read.filled().len();
                    this.linger = Some((deadline, drained));
                }
                Poll::Ready(_) => return Poll::Ready(Ok(())),
                Poll::Pending if this.expired(cx, deadline) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
