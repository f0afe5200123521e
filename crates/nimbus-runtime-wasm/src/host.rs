//! The per-instance host state: WASI context, wasi:http context, resource table, the outbound
//! policy, the memory limiter and the log sink.
//!
//! Nothing here is shared between instances except the immutable outbound rules; a guest sees
//! no preopened directories, no sockets, only its declared environment variables, and can reach
//! only the outbound HTTP destinations its manifest allows.

use nimbus_core::OutboundRule;
use nimbus_core::outbound::{default_port, is_allowed};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// Most log bytes kept per invocation; the rest is dropped and the truncation noted.
pub const MAX_LOG_BYTES: usize = 64 * 1024;

pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) outbound: OutboundPolicy,
    pub(crate) limiter: MemoryLimiter,
    /// When the current invocation must stop; read by the epoch callback.
    pub(crate) deadline: Instant,
    /// The key-value stores this function may open, if the platform has any.
    pub(crate) kv: Option<crate::keyvalue::KeyValue>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// Decides outbound HTTP by the URI the host will actually dial; requests to
/// `nimbus.internal` go to the local API in-process instead.
pub(crate) struct OutboundPolicy {
    pub(crate) rules: Arc<[OutboundRule]>,
    pub(crate) local: Option<LocalApi>,
}

/// nimbus's local API as one function reaches it.
#[derive(Clone)]
pub(crate) struct LocalApi {
    pub(crate) services: Arc<dyn nimbus_runtime::Services>,
    pub(crate) caller: Arc<nimbus_runtime::Caller>,
}

type SendResult = Result<
    (
        http::Response<wasmtime_wasi_http::WasiBody>,
        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ),
    wasmtime_wasi_http::Error,
>;

impl LocalApi {
    /// Serve a guest's request to the local API without any network.
    fn serve(
        &self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let local = self.clone();
        // An answer may come before the body is read (a refused upload); the guest must still
        // be able to finish writing it and read the answer, as from a server that drains.
        let request = request.map(|body| {
            use http_body_util::BodyExt;
            DrainOnDrop(Some(body)).boxed_unsync()
        });
        if let Some(rest) = request
            .uri()
            .path()
            .strip_prefix(nimbus_runtime::LOCAL_S3_PREFIX)
            && (rest.is_empty() || rest.starts_with('/'))
        {
            return local.serve_s3(request);
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (parts, body) = request.into_parts();
            let answer = nimbus_runtime::call_local(
                local.services.as_ref(),
                &local.caller,
                &parts,
                parts.uri.path(),
                body,
            )
            .await;
            let response = http::Response::builder()
                .status(answer.status)
                .header("content-type", "application/json")
                .body(
                    http_body_util::Full::new(answer.body)
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                )
                .map_err(|_| wasmtime_wasi_http::Error::InternalError(None))?;
            Ok((
                response,
                Box::new(async { Ok(()) })
                    as Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
            ))
        })
    }
}

/// A request body that, dropped before its end, reads the rest in the background and discards
/// it, so the writer (the guest) never sees its body refused. It ends with the guest's instance
/// at the latest, which closes the body.
struct DrainOnDrop<B: http_body::Body + Send + Unpin + 'static>(Option<B>);

impl<B: http_body::Body + Send + Unpin + 'static> http_body::Body for DrainOnDrop<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let Some(body) = self.0.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = std::task::ready!(Pin::new(body).poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            self.0 = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|body| body.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.0.as_ref().map_or_else(
            || http_body::SizeHint::with_exact(0),
            |body| body.size_hint(),
        )
    }
}

impl<B: http_body::Body + Send + Unpin + 'static> Drop for DrainOnDrop<B> {
    fn drop(&mut self) {
        let Some(mut body) = self.0.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                use http_body_util::BodyExt;
                while let Some(Ok(_)) = body.frame().await {}
            });
        }
    }
}

impl LocalApi {
    /// Serve a guest's S3 request (`/s3/BUCKET/KEY`) as the calling function, streamed both
    /// ways: unsigned, authorized by the function's bucket grants.
    fn serve_s3(
        &self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let local = self.clone();
        Box::new(async move {
            use http_body_util::BodyExt;
            let (mut parts, body) = request.into_parts();
            let path = parts.uri.path();
            let stripped = path
                .strip_prefix(nimbus_runtime::LOCAL_S3_PREFIX)
                .filter(|rest| !rest.is_empty())
                .unwrap_or("/");
            let path_and_query = match parts.uri.query() {
                Some(query) => format!("{stripped}?{query}"),
                None => stripped.to_owned(),
            };
            parts.uri = http::Uri::builder()
                .scheme("http")
                .authority(nimbus_runtime::LOCAL_API_HOST)
                .path_and_query(path_and_query)
                .build()
                .map_err(|_| wasmtime_wasi_http::Error::HttpRequestUriInvalid)?;
            let body = body
                .map_err(|e| -> nimbus_runtime::BodyError { format!("{e:?}").into() })
                .boxed_unsync();
            let response = local
                .services
                .aws_as_caller(&local.caller, http::Request::from_parts(parts, body))
                .await
                .map(|body| {
                    body.map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))
                        .boxed_unsync()
                });
            Ok((
                response,
                Box::new(async { Ok(()) })
                    as Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
            ))
        })
    }
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        // `default_send_request` connects to the URI's authority, so the URI is what we judge;
        // the Host header the guest may set plays no part.
        let uri = request.uri();
        if uri.host() == Some(nimbus_runtime::LOCAL_API_HOST)
            && let Some(local) = &self.local
        {
            return local.serve(request);
        }
        let scheme = uri.scheme_str().unwrap_or("");
        let host = uri.host().unwrap_or("");
        let port = uri.port_u16().or_else(|| default_port(scheme));
        let allowed = port.is_some_and(|port| is_allowed(&self.rules, scheme, host, port));
        if !allowed {
            tracing::debug!(%uri, "outbound request denied by allowed_outbound_hosts");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io)
                    as Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
            ))
        })
    }
}

/// Caps linear memory growth and remembers whether the cap was hit, so a trap that follows
/// (Rust aborts on allocation failure) is reported as a memory fault, not a generic trap.
pub(crate) struct MemoryLimiter {
    pub(crate) limit: usize,
    pub(crate) exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Collects what the guest writes to stdout and stderr; drained after each invocation.
#[derive(Clone, Default)]
pub(crate) struct LogSink {
    buffer: Arc<Mutex<LogBuffer>>,
}

#[derive(Default)]
struct LogBuffer {
    bytes: Vec<u8>,
    dropped: usize,
}

impl LogSink {
    /// Take this invocation's output, leaving the sink empty for the next one.
    pub(crate) fn take(&self) -> String {
        let Ok(mut buffer) = self.buffer.lock() else {
            return String::new();
        };
        let bytes = std::mem::take(&mut buffer.bytes);
        let dropped = std::mem::take(&mut buffer.dropped);
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if dropped > 0 {
            text.push_str(&format!(
                "\n[nimbus: {dropped} more bytes of output dropped]\n"
            ));
        }
        text
    }

    fn write(&self, data: &[u8]) {
        if let Ok(mut buffer) = self.buffer.lock() {
            let room = MAX_LOG_BYTES.saturating_sub(buffer.bytes.len());
            let kept = room.min(data.len());
            buffer
                .bytes
                .extend_from_slice(data.get(..kept).unwrap_or(data));
            buffer.dropped += data.len() - kept;
        }
    }
}

impl IsTerminal for LogSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogSink {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for LogSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
