//! A scripted [`LoadedFunction`] for fast tests of what sits above the executors (pools,
//! consumers): no wasmtime, no processes. Compiled only with the `testing` feature.

use crate::{
    Body, BodyError, Completion, Instance, InvocationContext, InvokeError, Invoked, LoadedFunction,
    Request,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use nimbus_core::message::EventShape;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What an invocation answers: a status and body, or an invocation error.
pub type Answer = Result<(u16, Bytes), InvokeError>;

type Script = dyn Fn(usize, &Request) -> Answer + Send + Sync;

/// A function that answers invocation number `n` (0-based, across instances) with
/// `script(n, request)`. A failed invocation discards its instance, as real executors do.
pub struct ScriptedFunction {
    shape: EventShape,
    script: Arc<Script>,
    calls: Arc<AtomicUsize>,
    instances: AtomicUsize,
}

impl ScriptedFunction {
    pub fn new(
        shape: EventShape,
        script: impl Fn(usize, &Request) -> Answer + Send + Sync + 'static,
    ) -> Arc<ScriptedFunction> {
        Arc::new(ScriptedFunction {
            shape,
            script: Arc::new(script),
            calls: Arc::new(AtomicUsize::new(0)),
            instances: AtomicUsize::new(0),
        })
    }

    /// Invocations so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Instances created so far (cold starts).
    pub fn instances(&self) -> usize {
        self.instances.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl LoadedFunction for ScriptedFunction {
    async fn instantiate(&self) -> Result<Box<dyn Instance>, InvokeError> {
        self.instances.fetch_add(1, Ordering::SeqCst);
        Ok(Box::new(ScriptedInstance {
            script: self.script.clone(),
            calls: self.calls.clone(),
        }))
    }

    fn event_shape(&self) -> EventShape {
        self.shape
    }
}

struct ScriptedInstance {
    script: Arc<Script>,
    calls: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Instance for ScriptedInstance {
    async fn invoke(self: Box<Self>, request: Request, _context: InvocationContext) -> Invoked {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let answer = (self.script)(n, &request);
        let failure = answer.as_ref().err().cloned();
        let response = answer.map(|(status, body)| {
            let body: Body = Full::new(body)
                .map_err(|never: std::convert::Infallible| -> BodyError { match never {} })
                .boxed_unsync();
            let mut response = http::Response::new(body);
            *response.status_mut() =
                http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
            response
        });
        let instance: Box<dyn Instance> = self;
        let completion = match failure {
            None => Completion {
                result: Ok(()),
                logs: String::new(),
                instance: Some(instance),
            },
            Some(error) => Completion {
                result: Err(error),
                logs: String::new(),
                instance: None,
            },
        };
        Invoked {
            response,
            completion: Box::pin(async move { completion }),
        }
    }
}
