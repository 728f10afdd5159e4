//! The door of the `AgentService`: a request is checked before its body is read.
//!
//! tonic decodes a whole message (up to the 4 MiB limit) before a handler runs, so a handler
//! that authenticates is too late: a stranger could make the coordinator buffer 4 MiB per
//! stream. [`AgentGate`] wraps the service at the HTTP level and answers a request without a
//! valid client certificate with `Unauthenticated` (or `PermissionDenied` when revoked) straight
//! away, without touching its body. It also caps a `Renew` body at [`MAX_RENEW_BYTES`]: a CSR is
//! a few KiB.

use std::convert::Infallible;
use std::task::{Context, Poll};

use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use super::auth;
use crate::revocation::Revocations;

/// Largest `Renew` request body.
pub const MAX_RENEW_BYTES: usize = 64 * 1024;
/// The path of the `Renew` method.
const RENEW_PATH: &str = "/lifeboat.v1.AgentService/Renew";

/// Wraps the generated `AgentServiceServer`.
#[derive(Debug, Clone)]
pub struct AgentGate<S> {
    inner: S,
    revocations: Revocations,
}

impl<S> AgentGate<S> {
    pub fn new(inner: S, revocations: Revocations) -> Self {
        Self { inner, revocations }
    }
}

impl<S> Service<http::Request<Body>> for AgentGate<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let certs = request
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs);
        if let Err(status) = auth::identify(certs.as_deref().map(Vec::as_slice), &self.revocations) {
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let request = if request.uri().path() == RENEW_PATH {
            request.map(|body| Body::new(Limited::new(body, MAX_RENEW_BYTES).map_err(renew_too_large)))
        } else {
            request
        };
        // `poll_ready` readied `self.inner`; the clone left behind is readied next time.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        Box::pin(inner.call(request))
    }
}

impl<S: NamedService> NamedService for AgentGate<S> {
    const NAME: &'static str = S::NAME;
}

fn renew_too_large(err: Box<dyn std::error::Error + Send + Sync>) -> Status {
    if err.is::<LengthLimitError>() {
        Status::resource_exhausted(format!(
            "a Renew request is at most {MAX_RENEW_BYTES} bytes: send a certificate signing request only"
        ))
    } else {
        Status::from_error(err)
    }
}
