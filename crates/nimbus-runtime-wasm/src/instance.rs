//! Wasm instances: creation (a cold start), invocation, limits and reuse.
//!
//! Each instance owns a `Store` whose data is a fresh [`HostState`]. Limits per instance:
//! - memory: a [`ResourceLimiter`](wasmtime::ResourceLimiter) refuses growth past the
//!   function's `memory`; the trap that follows is reported as `MemoryExceeded`.
//! - time: the epoch ticker fires every [`EPOCH_TICK`](crate::EPOCH_TICK); at each tick the
//!   guest yields to tokio (so a busy loop cannot starve other requests on the same worker) and
//!   traps once past its deadline. A tokio timer around the call covers a guest parked on I/O.
//!
//! `invoke` drives the guest's `incoming-handler.handle` until the guest sets its response,
//! returns the response head, and hands the still-running call over as the completion future;
//! whoever awaits it keeps driving the guest while it writes the body. When the call returns, the completion hands the store back for serial
//! reuse if the function asks for it and nothing went wrong; any failure discards the store,
//! which returns its pooled memory slot.

use crate::host::{HostState, LogSink, MemoryLimiter, OutboundPolicy};
use futures::FutureExt;
use http_body_util::BodyExt;
use nimbus_core::{FunctionSpec, InstanceMode, OutboundRule};
use nimbus_runtime::{
    BodyError, Completion, Instance, InvocationContext, InvokeError, Invoked, LoadedFunction,
    Request,
};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiHttpView;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

pub(crate) struct WasmFunction {
    engine: Engine,
    pre: ProxyPre<HostState>,
    env: Arc<[(String, String)]>,
    rules: Arc<[OutboundRule]>,
    memory_bytes: usize,
    timeout: std::time::Duration,
    reuse: bool,
    local: Option<crate::host::LocalApi>,
    kv: Option<Arc<dyn nimbus_store::KvStore>>,
    /// Some variables are set from secrets at each instance's start.
    secret_env: bool,
}

impl WasmFunction {
    pub(crate) fn new(
        engine: Engine,
        pre: ProxyPre<HostState>,
        spec: &FunctionSpec,
        local: Option<(Arc<dyn nimbus_runtime::Services>, nimbus_runtime::Caller)>,
        kv: Option<Arc<dyn nimbus_store::KvStore>>,
    ) -> WasmFunction {
        WasmFunction {
            engine,
            pre,
            env: spec
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            rules: spec.allowed_outbound_hosts.clone().into(),
            memory_bytes: usize::try_from(spec.memory_bytes).unwrap_or(usize::MAX),
            timeout: spec.timeout,
            reuse: spec.instance == InstanceMode::Reuse,
            local: local.map(|(services, caller)| crate::host::LocalApi {
                services,
                caller: Arc::new(caller),
            }),
            kv,
            secret_env: !spec.secret_env.is_empty(),
        }
    }
}

impl WasmFunction {
    /// The stores an instance may open: the platform's, as the function's current grants
    /// allow.
    fn key_value(&self) -> Option<crate::keyvalue::KeyValue> {
        let (store, local) = (self.kv.clone()?, self.local.as_ref()?);
        let grants = local.services.grants(&local.caller)?;
        Some(crate::keyvalue::KeyValue {
            store,
            app: local.caller.app.clone(),
            grants: grants.kv.into(),
        })
    }
}

#[async_trait::async_trait]
impl LoadedFunction for WasmFunction {
    /// wasi:http components take events as HTTP requests (CloudEvents binary mode).
    fn event_shape(&self) -> nimbus_core::message::EventShape {
        nimbus_core::message::EventShape::CloudEvents
    }

    async fn instantiate(&self) -> Result<Box<dyn Instance>, InvokeError> {
        let logs = LogSink::default();
        let secret_env = match &self.local {
            Some(local) if self.secret_env => local
                .services
                .secret_env(&local.caller)
                .await
                .map_err(|e| InvokeError::InitFailed(e.message))?,
            _ => Vec::new(),
        };
        let wasi = WasiCtxBuilder::new()
            .envs(&self.env)
            .envs(&secret_env)
            .stdout(logs.clone())
            .stderr(logs.clone())
            .build();
        let state = HostState {
            wasi,
            http: wasmtime_wasi_http::WasiHttpCtx::new(),
            table: ResourceTable::new(),
            outbound: OutboundPolicy {
                rules: self.rules.clone(),
                local: self.local.clone(),
            },
            limiter: MemoryLimiter {
                limit: self.memory_bytes,
                exceeded: false,
            },
            deadline: Instant::now() + self.timeout,
            kv: self.key_value(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_callback(|context| {
            if Instant::now() >= context.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        let proxy = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|error| {
                if store.data().limiter.exceeded {
                    InvokeError::MemoryExceeded {
                        limit_mib: (self.memory_bytes >> 20) as u64,
                    }
                } else {
                    InvokeError::StartFailed(format!("{error:#}"))
                }
            })?;
        Ok(Box::new(WasmInstance {
            store,
            proxy: Arc::new(proxy),
            logs,
            reuse: self.reuse,
            memory_bytes: self.memory_bytes,
        }))
    }
}

struct WasmInstance {
    store: Store<HostState>,
    proxy: Arc<Proxy>,
    logs: LogSink,
    reuse: bool,
    memory_bytes: usize,
}

#[async_trait::async_trait]
impl Instance for WasmInstance {
    async fn invoke(self: Box<Self>, request: Request, context: InvocationContext) -> Invoked {
        let WasmInstance {
            mut store,
            proxy,
            logs,
            reuse,
            memory_bytes,
        } = *self;
        store.data_mut().deadline = context.deadline;
        store.data_mut().limiter.exceeded = false;
        store.set_epoch_deadline(1);

        let (response_tx, mut response_rx) = tokio::sync::oneshot::channel();
        let prepared: wasmtime::Result<_> = (|| {
            let http = &mut store.data_mut().http();
            let request = request.map(|body| {
                body.map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())))
            });
            let request = http.new_incoming_request(Scheme::Http, request)?;
            let outparam = http.new_response_outparam(response_tx)?;
            wasmtime::Result::Ok((request, outparam))
        })();
        let (guest_request, outparam) = match prepared {
            Ok(handles) => handles,
            Err(error) => {
                let error = InvokeError::BadResponse(format!(
                    "request could not be passed to the guest: {error:#}"
                ));
                let completion = Completion {
                    result: Err(error.clone()),
                    logs: String::new(),
                    instance: None,
                };
                return Invoked {
                    response: Err(error),
                    completion: futures::future::ready(completion).boxed(),
                };
            }
        };

        let deadline = tokio::time::Instant::from_std(context.deadline);
        let timeout = context.timeout;
        // The guest call owns the store. It is driven here until the guest sets its response,
        // and then by whoever awaits the completion (the dispatcher's invocation task) while
        // the guest writes the body. No extra task per invocation.
        let mut call = Box::pin(async move {
            let call =
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, guest_request, outparam);
            let result = match tokio::time::timeout_at(deadline, call).await {
                Err(_elapsed) => Err(InvokeError::Timeout(timeout)),
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(classify(&error, &store, timeout, memory_bytes)),
            };
            let text = logs.take();
            let instance: Option<Box<dyn Instance>> = match (&result, reuse) {
                (Ok(()), true) => Some(Box::new(WasmInstance {
                    store,
                    proxy,
                    logs,
                    reuse,
                    memory_bytes,
                })),
                _ => None,
            };
            Completion {
                result,
                logs: text,
                instance,
            }
        });

        // Whichever comes first: the guest setting its response, or the guest finishing.
        let early = tokio::select! {
            biased;
            response = &mut response_rx => response,
            completion = &mut call => {
                // The guest may have set the response just before returning.
                return finish_without_wait(response_rx.try_recv().ok(), completion);
            }
        };

        match early {
            Ok(Ok(response)) => {
                let response = response.map(|body| {
                    body.map_err(|e| BodyError::from(format!("{e:?}")))
                        .boxed_unsync()
                });
                Invoked {
                    response: Ok(response),
                    completion: call,
                }
            }
            Ok(Err(code)) => {
                let error =
                    InvokeError::BadResponse(format!("the guest answered with an error: {code:?}"));
                Invoked {
                    response: Err(error),
                    completion: call,
                }
            }
            // The outparam was dropped without a response: the guest failed; its completion says how.
            Err(_) => {
                let completion = call.await;
                finish_without_wait(None, completion)
            }
        }
    }
}

type GuestResponse = Result<
    hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>,
    wasmtime_wasi_http::p2::bindings::http::types::ErrorCode,
>;

/// Build the result when the guest finished before (or without) a response being awaited.
fn finish_without_wait(response: Option<GuestResponse>, mut completion: Completion) -> Invoked {
    let response = match (response, &completion.result) {
        (_, Err(error)) => Err(error.clone()),
        (Some(Ok(response)), Ok(())) => Ok(response.map(|body| {
            body.map_err(|e| BodyError::from(format!("{e:?}")))
                .boxed_unsync()
        })),
        (Some(Err(code)), Ok(())) => Err(InvokeError::BadResponse(format!(
            "the guest answered with an error: {code:?}"
        ))),
        (None, Ok(())) => {
            let error =
                InvokeError::BadResponse("the handler returned without setting a response".into());
            completion.result = Err(error.clone());
            completion.instance = None;
            Err(error)
        }
    };
    Invoked {
        response,
        completion: futures::future::ready(completion).boxed(),
    }
}

/// Turn a wasmtime error into what the user should hear.
fn classify(
    error: &wasmtime::Error,
    store: &Store<HostState>,
    timeout: std::time::Duration,
    memory_bytes: usize,
) -> InvokeError {
    if store.data().limiter.exceeded {
        return InvokeError::MemoryExceeded {
            limit_mib: (memory_bytes >> 20) as u64,
        };
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => InvokeError::Timeout(timeout),
        Some(Trap::UnreachableCodeReached) => InvokeError::Trap(
            "wasm `unreachable` executed (a Rust panic or abort ends this way; `nimbus logs` shows the guest's message)".into(),
        ),
        Some(trap) => InvokeError::Trap(trap.to_string()),
        None => InvokeError::Trap(format!("{error:#}")),
    }
}
