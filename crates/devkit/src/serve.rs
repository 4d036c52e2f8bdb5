//! The HTTP/1.1 server loop the local stand-ins share (the test peers of `assistd-testkit`
//! too): bind an address, accept connections until stopped, and serve each with hyper, handing
//! every request to the handler together with a way to drop its connection unanswered.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, TryStreamExt as _};
use http::{Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// A response body that is either whole or streamed; a stream error cuts the connection.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A body written chunk by chunk as `chunks` yields them; an error ends the connection without
/// the body's last chunk, as a server that dies mid-answer would.
pub fn streamed(
    chunks: impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) -> Body {
    StreamBody::new(chunks.map_ok(Frame::data)).boxed_unsync()
}

/// One connection's way out: a handler that calls [`Hangup::drop_connection`] gets its
/// connection closed with the request unanswered.
#[derive(Clone, Debug, Default)]
pub struct Hangup(Arc<Notify>);

impl Hangup {
    /// Closes the connection; never returns, since the connection (and with it the handler)
    /// is dropped.
    pub async fn drop_connection(&self) -> Infallible {
        self.0.notify_one();
        std::future::pending().await
    }
}

/// A bound listener, not yet serving: peers whose state names their own address (an issuer
/// URL) read it before they start.
#[derive(Debug)]
pub struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Bound {
    /// Binds 127.0.0.1 on an ephemeral port.
    ///
    /// # Panics
    /// No port can be bound; `peer` names the server in the message.
    pub async fn localhost(peer: &str) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap_or_else(|err| panic!("bind 127.0.0.1:0 for the {peer}: {err}"));
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        Self { listener, addr }
    }

    /// Binds `addr` (port 0 picks a free port).
    ///
    /// # Errors
    /// The address cannot be bound (in use, not local, not permitted).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self { listener, addr })
    }

    /// The address bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves every connection with `handler` until the returned [`Serving`] is dropped.
    pub fn serve<H, F, B>(self, handler: H) -> Serving
    where
        H: Fn(Request<Incoming>, Hangup) -> F + Send + Sync + 'static,
        F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let task = tokio::spawn(accept(self.listener, Arc::new(handler)));
        Serving {
            addr: self.addr,
            task,
        }
    }
}

/// A serving peer. Dropping it stops accepting and closes every open connection.
#[derive(Debug)]
pub struct Serving {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Serving {
    /// The address served.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

async fn accept<H, F, B>(listener: TcpListener, handler: Arc<H>)
where
    H: Fn(Request<Incoming>, Hangup) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, Arc::clone(&handler)));
                }
                // E.g. out of file descriptors: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished connections so the set does not grow with every one served.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves one HTTP/1.1 connection until it ends or a handler hangs up.
async fn connection<H, F, B>(stream: TcpStream, handler: Arc<H>)
where
    H: Fn(Request<Incoming>, Hangup) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Each write goes out at once, as a streamed answer's events do from real front ends; with
    // Nagle's algorithm a small event could wait for the client's delayed ACK (~40 ms).
    let _ = stream.set_nodelay(true);
    let hangup = Hangup::default();
    let service = {
        let hangup = hangup.clone();
        hyper::service::service_fn(move |request| handler(request, hangup.clone()))
    };
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        // A client that gives up mid-request ends the connection; nothing to report.
        _ = connection => {}
        // Dropping the connection closes the socket with the request unanswered.
        () = hangup.0.notified() => {}
    }
}
