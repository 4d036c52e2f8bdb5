//! The HTTP server loop the local stand-ins share (the test peers of `assistd-testkit` too):
//! bind an address, accept connections until stopped, and serve each with hyper, handing every
//! request to the handler together with a way to drop its connection unanswered.
//!
//! Every port speaks HTTP/1.1 and HTTP/2 with prior knowledge (h2c, no TLS), told apart by the
//! first bytes of a connection. Over HTTP/2 every request of a connection is a stream of it,
//! so a [`Hangup`] drops the whole connection and with it every stream on it, not just the
//! request whose handler hung up. HTTP/2 connections advertise no stream limit, so a client
//! never waits for a free stream at a stand-in.
//!
//! A listener can be held to the host names it was started for ([`Bound::answer_only_to`]):
//! a web page on another origin can make a browser send requests to a loopback port by DNS
//! rebinding (its own name resolving to 127.0.0.1), but the browser still sends that name in
//! `Host`, so such requests get `421 Misdirected Request` before any handler sees them.

use std::convert::Infallible;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, TryStreamExt as _};
use http::header::{CONTENT_TYPE, HOST};
use http::{Request, Response, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt as _, Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
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

/// Why a request body could not be read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// It is longer than the limit (answer `413 Payload Too Large`).
    TooLarge,
    /// The client stopped sending, or sent a malformed body.
    Broken,
}

/// Reads a request body of at most `limit` bytes, refusing a longer one as soon as its
/// `Content-Length` or its bytes pass the limit, without reading further.
///
/// # Errors
/// [`BodyError::TooLarge`] past `limit`, [`BodyError::Broken`] if the body fails.
pub async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let declared = hyper::body::Body::size_hint(&body).lower();
    if usize::try_from(declared).map_or(true, |declared| declared > limit) {
        return Err(BodyError::TooLarge);
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Broken),
    }
}

/// One connection's way out: a handler that calls [`Hangup::drop_connection`] gets its
/// connection closed with the request unanswered. Over HTTP/2 that connection carries other
/// requests too: all of them are cut with it.
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

/// The `Host` values a listener answers to, compared without regard to case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts(Vec<String>);

impl AllowedHosts {
    /// The names a browser on this machine reaches `addr` by: `127.0.0.1:PORT`,
    /// `localhost:PORT` and `[::1]:PORT` for a loopback or unspecified address, the address
    /// itself (`192.0.2.7:PORT`, `[2001:db8::7]:PORT`) for any other.
    #[must_use]
    pub fn for_addr(addr: SocketAddr) -> Self {
        let port = addr.port();
        let ip = addr.ip();
        if ip.is_loopback() || ip.is_unspecified() {
            Self(vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ])
        } else {
            Self(vec![addr.to_string()])
        }
    }

    /// These hosts and `authority` (`host:port`, e.g. the authority of a public URL).
    #[must_use]
    pub fn and(mut self, authority: &str) -> Self {
        let authority = authority.to_ascii_lowercase();
        if !self.0.contains(&authority) {
            self.0.push(authority);
        }
        self
    }

    /// The allowed values, in order.
    #[must_use]
    pub fn hosts(&self) -> &[String] {
        &self.0
    }

    /// Whether `request` names an allowed host: its `Host` header, and the authority of an
    /// absolute-form target if it has one. An HTTP/1 request without `Host` is refused; an
    /// HTTP/2 one names its host in `:authority` (the target's authority) instead, and needs
    /// one or the other.
    #[must_use]
    pub fn allows<B>(&self, request: &Request<B>) -> bool {
        let allowed = |host: &str| self.0.iter().any(|known| known.eq_ignore_ascii_case(host));
        let host = request
            .headers()
            .get(HOST)
            .and_then(|value| value.to_str().ok())
            .or_else(|| {
                (request.version() == Version::HTTP_2)
                    .then(|| request.uri().authority().map(http::uri::Authority::as_str))
                    .flatten()
            });
        host.is_some_and(allowed)
            && request
                .uri()
                .authority()
                .is_none_or(|authority| allowed(authority.as_str()))
    }

    /// The answer to a request for another host: `421 Misdirected Request`, naming the hosts
    /// that are served (not the one asked for).
    fn refusal(&self) -> Response<Full<Bytes>> {
        let text = format!(
            "misdirected request: this development server answers only to Host {}\n",
            self.0.join(", ")
        );
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = StatusCode::MISDIRECTED_REQUEST;
        response.headers_mut().insert(
            CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// A bound listener, not yet serving: peers whose state names their own address (an issuer
/// URL) read it before they start.
#[derive(Debug)]
pub struct Bound {
    listener: TcpListener,
    addr: SocketAddr,
    hosts: Option<Arc<AllowedHosts>>,
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
        Self {
            listener,
            addr,
            hosts: None,
        }
    }

    /// Binds `addr` (port 0 picks a free port).
    ///
    /// # Errors
    /// The address cannot be bound (in use, not local, not permitted).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        Ok(Self {
            listener,
            addr,
            hosts: None,
        })
    }

    /// Answers only requests whose `Host` is one of `hosts`; others get `421` without reaching
    /// the handler.
    #[must_use]
    pub fn answer_only_to(mut self, hosts: AllowedHosts) -> Self {
        self.hosts = Some(Arc::new(hosts));
        self
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
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let task = tokio::spawn(accept(self.listener, self.hosts, Arc::new(handler)));
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

async fn accept<H, F, B>(listener: TcpListener, hosts: Option<Arc<AllowedHosts>>, handler: Arc<H>)
where
    H: Fn(Request<Incoming>, Hangup) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, hosts.clone(), Arc::clone(&handler)));
                }
                // E.g. out of file descriptors: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished connections so the set does not grow with every one served.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Serves one connection, HTTP/1.1 or HTTP/2 (h2c with prior knowledge), until it ends or a
/// handler hangs up.
async fn connection<H, F, B>(stream: TcpStream, hosts: Option<Arc<AllowedHosts>>, handler: Arc<H>)
where
    H: Fn(Request<Incoming>, Hangup) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Each write goes out at once, as a streamed answer's events do from real front ends; with
    // Nagle's algorithm a small event could wait for the client's delayed ACK (~40 ms).
    let _ = stream.set_nodelay(true);
    let hangup = Hangup::default();
    let service = {
        let hangup = hangup.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let refused = hosts.as_ref().filter(|hosts| !hosts.allows(&request));
            match refused {
                Some(hosts) => {
                    futures::future::Either::Left(futures::future::ready(Ok::<_, Infallible>(
                        hosts.refusal().map(Either::Right),
                    )))
                }
                None => {
                    let answer = handler(request, hangup.clone());
                    futures::future::Either::Right(async move {
                        answer.await.map(|response| response.map(Either::Left))
                    })
                }
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Stand-ins serve however many calls a test holds open on one connection; the limit of
    // a real upstream is the client's concern.
    builder.http2().max_concurrent_streams(None);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        // A client that gives up mid-request ends the connection; nothing to report.
        _ = connection => {}
        // Dropping the connection closes the socket with the request unanswered (over HTTP/2,
        // every stream of the connection with it; their handler tasks end on the reset).
        () = hangup.0.notified() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(version: Version, uri: &str, host: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().version(version).uri(uri);
        if let Some(host) = host {
            builder = builder.header(HOST, host);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn http2_names_its_host_in_the_authority_and_http1_in_host() {
        let hosts = AllowedHosts::for_addr(SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)));
        let h2 = Version::HTTP_2;
        let h1 = Version::HTTP_11;
        // HTTP/2 without Host: `:authority` decides.
        assert!(hosts.allows(&request(h2, "http://127.0.0.1:8080/v1beta/models", None)));
        assert!(hosts.allows(&request(h2, "http://LOCALHOST:8080/", None)));
        assert!(!hosts.allows(&request(h2, "http://evil.example:8080/", None)));
        assert!(!hosts.allows(&request(h2, "/v1beta/models", None)));
        // Host and authority must both be allowed.
        assert!(!hosts.allows(&request(
            h2,
            "http://127.0.0.1:8080/",
            Some("evil.example:8080")
        )));
        // HTTP/1.1 needs Host, as before, even with an absolute-form target.
        assert!(hosts.allows(&request(h1, "/v1beta/models", Some("127.0.0.1:8080"))));
        assert!(!hosts.allows(&request(h1, "http://127.0.0.1:8080/", None)));
        assert!(!hosts.allows(&request(h1, "/", Some("evil.example:8080"))));
    }
}
