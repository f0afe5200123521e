//! Process instances: start (a cold start, timed as Init Duration), invoke over the Runtime
//! API, and tear down.
//!
//! One invocation at a time per instance. The instance waits for the first of: the runtime's
//! answer, the process exiting (a crash, or the kernel's OOM killer), or the deadline (the whole
//! process group is killed). A handler error leaves the runtime healthy, so the instance is
//! reused as Lambda does; a timeout or crash never is. Every invocation's logs are framed by
//! Lambda's `START` / `END` / `REPORT` lines.

use crate::logs::LogStream;
use crate::runtime_api::{Invocation, PAYLOAD_LIMIT, Reply, RuntimeApi};
use crate::sandbox::{self, Plan, Sandbox, Spawned};
use bytes::Bytes;
use futures::FutureExt;
use http_body_util::{BodyExt, Full};
use nimbus_runtime::{
    ClientAddr, Completion, Instance, InvocationContext, InvokeError, Invoked, LoadedFunction,
    RawEvent, Request,
};
use nimbus_wire::apigw::{self, RequestFacts};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a runtime may take to initialise before it asks for its first event (Lambda's
/// limit for on-demand functions).
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Most processes and threads one instance may run.
pub const PIDS_MAX: u32 = 256;
/// How much of a failed init's output the error message quotes.
const INIT_OUTPUT_TAIL: usize = 2048;

/// What every instance of one function version shares.
pub(crate) struct ProcessFunction {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub code_dir: PathBuf,
    pub instances_dir: PathBuf,
    pub memory_bytes: u64,
    pub isolate_network: bool,
    pub reuse: bool,
    /// Some variables are set from secrets at each instance's start.
    pub secret_env: bool,
    pub runtime_name: &'static str,
    pub version: u64,
    pub function_arn: String,
    pub sandbox: Arc<Sandbox>,
    /// nimbus's local API (queues, the event bus), served beside the Runtime API.
    pub services: Option<(
        Arc<dyn nimbus_runtime::Services>,
        Arc<nimbus_runtime::Caller>,
    )>,
}

#[async_trait::async_trait]
impl LoadedFunction for ProcessFunction {
    /// Lambda handlers take one JSON event per invocation, as Lambda's event sources send it.
    fn event_shape(&self) -> nimbus_core::message::EventShape {
        nimbus_core::message::EventShape::LambdaJson
    }

    async fn instantiate(&self) -> Result<Box<dyn Instance>, InvokeError> {
        let started = Instant::now();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.instances_dir.join(&id);
        let tmp = dir.join("tmp");
        let start_failed =
            |what: &str, e: std::io::Error| InvokeError::StartFailed(format!("{what}: {e}"));
        tokio::fs::create_dir_all(&tmp)
            .await
            .map_err(|e| start_failed("create the instance directory", e))?;
        let mut env = self.env.clone();
        let day = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        env.push((
            "AWS_LAMBDA_LOG_STREAM_NAME".into(),
            format!(
                "{}/[{}]{id}",
                day.get(..10).unwrap_or("1970-01-01").replace('-', "/"),
                self.version
            ),
        ));
        // Each instance gets its own token for the local API (it matters with
        // `network = "host"`, where other local processes could reach the listener).
        let token = hex::encode(rand::random::<[u8; 16]>());
        let mut session = None;
        let mut session_token = None;
        if let Some((services, caller)) = &self.services {
            if self.secret_env {
                let values = services
                    .secret_env(caller)
                    .await
                    .map_err(|e| InvokeError::InitFailed(e.message));
                match values {
                    Ok(values) => env.extend(values),
                    Err(error) => {
                        let _ = tokio::fs::remove_dir_all(&dir).await;
                        return Err(error);
                    }
                }
            }
            env.push(("NIMBUS_API_TOKEN".into(), token.clone()));
            // Like a Lambda execution role: credentials limited to the function's grants.
            if let Some(credentials) = services.aws_credentials(caller) {
                env.retain(|(k, _)| {
                    !k.starts_with("AWS_ACCESS_KEY")
                        && !k.starts_with("AWS_SECRET")
                        && k != "AWS_SESSION_TOKEN"
                });
                session = Some(Session {
                    services: services.clone(),
                    access_key_id: credentials.access_key_id.clone(),
                });
                env.push(("AWS_ACCESS_KEY_ID".into(), credentials.access_key_id));
                env.push((
                    "AWS_SECRET_ACCESS_KEY".into(),
                    credentials.secret_access_key,
                ));
                session_token = Some(credentials.session_token.clone());
                env.push(("AWS_SESSION_TOKEN".into(), credentials.session_token));
            }
        }
        let plan = Plan {
            program: self.program.clone(),
            args: self.args.clone(),
            env,
            cwd: self.code_dir.clone(),
            tmp,
            memory_bytes: self.memory_bytes,
            pids_max: PIDS_MAX,
            isolate_network: self.isolate_network,
        };
        let spawned = match self.sandbox.spawn(plan).await {
            Ok(spawned) => spawned,
            Err(error) => {
                let _ = tokio::fs::remove_dir_all(&dir).await;
                return Err(start_failed(
                    &format!("start {}", self.program.display()),
                    error,
                ));
            }
        };
        let Spawned {
            mut child,
            listener,
            extension,
            output,
            cgroup,
        } = spawned;
        let pid = child.id();
        let mut guard = Teardown {
            pid,
            cgroup,
            dir: Some(dir),
            _session: session,
        };
        let logs = LogStream::start(output).map_err(|e| start_failed("read the output", e))?;
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| start_failed("serve the Runtime API", e))?;
        let local =
            self.services
                .clone()
                .map(|(services, caller)| crate::runtime_api::LocalRoute {
                    services,
                    caller,
                    token,
                    session_token,
                });
        let extension = extension
            .map(tokio::net::TcpListener::from_std)
            .transpose()
            .map_err(|e| start_failed("serve the secrets extension", e))?;
        let api = RuntimeApi::serve(listener, extension, &self.function_arn, local);

        // Init ends when the runtime first asks for an event.
        let mut state = api.state.clone();
        let outcome = tokio::select! {
            ready = state.wait_for(|s| s.ready || s.init_error.is_some()) => {
                match ready.map(|s| s.init_error.clone()) {
                    Ok(None) => Ok(()),
                    Ok(Some((error_type, message))) => Err(format!("{error_type}: {message}")),
                    Err(_) => Err("the Runtime API stopped".to_owned()),
                }
            }
            status = child.wait() => Err(match status {
                Ok(status) => format!("the process exited ({}) before asking for its first event", describe_exit(status)),
                Err(e) => format!("the process could not be watched: {e}"),
            }),
            _ = tokio::time::sleep(INIT_TIMEOUT) => {
                Err(format!("the runtime did not ask for its first event within {INIT_TIMEOUT:?}; move slow start-up work into the handler (or make it lazy), or check that `bootstrap` calls the Runtime API at AWS_LAMBDA_RUNTIME_API"))
            }
        };
        tracing::debug!(init = ?started.elapsed(), "instance started");
        let init_logs = logs.take().await;
        if let Err(cause) = outcome {
            let out_of_memory = guard.cgroup.as_ref().is_some_and(|c| c.oom_killed());
            drop(api);
            guard.kill();
            let _ = child.wait().await;
            guard.clean_up();
            if out_of_memory {
                return Err(InvokeError::MemoryExceeded {
                    limit_mib: self.memory_bytes >> 20,
                });
            }
            let tail = tail(&init_logs, INIT_OUTPUT_TAIL);
            return Err(InvokeError::InitFailed(if tail.is_empty() {
                cause
            } else {
                format!("{cause}; its output ended with:\n{tail}")
            }));
        }
        Ok(Box::new(ProcessInstance {
            function: FunctionFacts {
                memory_bytes: self.memory_bytes,
                reuse: self.reuse,
                runtime_name: self.runtime_name,
                version: self.version,
            },
            child,
            api,
            logs,
            guard,
            init: Some((started.elapsed(), init_logs)),
        }))
    }
}

struct FunctionFacts {
    memory_bytes: u64,
    reuse: bool,
    runtime_name: &'static str,
    version: u64,
}

/// Kills the process group and removes the instance's cgroup and directory, whatever happens.
struct Teardown {
    pid: Option<u32>,
    cgroup: Option<sandbox::Cgroup>,
    dir: Option<PathBuf>,
    /// The instance's AWS credentials end with it.
    _session: Option<Session>,
}

/// An instance's temporary AWS credentials, released when dropped (with the instance, or when
/// it fails to start).
struct Session {
    services: Arc<dyn nimbus_runtime::Services>,
    access_key_id: String,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.services.release_aws_credentials(&self.access_key_id);
    }
}

impl Teardown {
    fn kill(&mut self) {
        if let Some(pid) = self.pid.take()
            && let Ok(pid) = i32::try_from(pid)
        {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// Remove what is left: the cgroup once the killed processes are reaped, the directory
    /// off the async runtime.
    fn clean_up(&mut self) {
        if let Some(cgroup) = self.cgroup.take() {
            sandbox::remove_when_empty(cgroup);
        }
        if let Some(dir) = self.dir.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn_blocking(move || std::fs::remove_dir_all(dir));
                }
                Err(_) => {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
    }
}

impl Drop for Teardown {
    fn drop(&mut self) {
        self.kill();
        self.clean_up();
    }
}

struct ProcessInstance {
    function: FunctionFacts,
    child: tokio::process::Child,
    api: RuntimeApi,
    logs: LogStream,
    guard: Teardown,
    /// Init duration and output, reported with the first invocation.
    init: Option<(Duration, String)>,
}

enum Ended {
    Answer(Result<Reply, tokio::sync::oneshot::error::RecvError>),
    Exited(String),
    TimedOut,
}

#[async_trait::async_trait]
impl Instance for ProcessInstance {
    fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    async fn invoke(mut self: Box<Self>, request: Request, context: InvocationContext) -> Invoked {
        let started = Instant::now();
        let received = SystemTime::now();
        let raw = request.extensions().get::<RawEvent>().is_some();
        let source_ip = request
            .extensions()
            .get::<ClientAddr>()
            .map(|a| a.0.ip().to_string())
            .unwrap_or_else(|| "127.0.0.1".into());
        let (parts, body) = request.into_parts();
        let prepared = match read_body(body, PAYLOAD_LIMIT).await {
            Err(error) => Err(error),
            Ok(body) => {
                if raw {
                    let body = if body.is_empty() {
                        Bytes::from_static(b"{}")
                    } else {
                        body
                    };
                    serde_json::from_slice::<serde::de::IgnoredAny>(&body)
                        .map(|_| body)
                        .map_err(|e| InvokeError::BadEvent(format!("the event must be JSON ({e})")))
                } else {
                    let facts = RequestFacts {
                        request_id: &context.request_id,
                        source_ip,
                        received,
                    };
                    let event = apigw::request_event(&parts, &body, &facts);
                    let bytes = Bytes::from(event.to_string());
                    if bytes.len() as u64 > PAYLOAD_LIMIT {
                        Err(InvokeError::EventTooLarge {
                            limit: PAYLOAD_LIMIT,
                        })
                    } else {
                        Ok(bytes)
                    }
                }
            }
        };
        let event = match prepared {
            Ok(event) => event,
            Err(error) => {
                // Nothing reached the runtime: the instance stays as it was.
                let instance: Box<dyn Instance> = self;
                return Invoked {
                    response: Err(error.clone()),
                    completion: futures::future::ready(Completion {
                        result: Err(error),
                        logs: String::new(),
                        instance: Some(instance),
                    })
                    .boxed(),
                };
            }
        };

        let deadline_ms = SystemTime::now()
            .checked_add(context.deadline.saturating_duration_since(Instant::now()))
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        let invocation = Invocation {
            request_id: context.request_id.clone(),
            deadline_ms,
            trace_id: trace_id(),
            event,
            reply: reply_tx,
        };
        let deadline = tokio::time::Instant::from_std(context.deadline);
        let ended = if self.api.invocations.send(invocation).await.is_err() {
            Ended::Exited("the Runtime API is gone".into())
        } else {
            tokio::select! {
                // An answer wins over an exit seen in the same poll: a runtime may exit right
                // after answering (an uncaught exception is reported, then the process ends).
                biased;
                answer = reply_rx => Ended::Answer(answer),
                status = self.child.wait() => Ended::Exited(match status {
                    Ok(status) => describe_exit(status),
                    Err(e) => e.to_string(),
                }),
                _ = tokio::time::sleep_until(deadline) => Ended::TimedOut,
            }
        };
        let duration = started.elapsed();

        let (response, keep) = match ended {
            Ended::Answer(Ok(Reply::Response(result))) => {
                let mapped = if raw {
                    let mut response = http::Response::new(result);
                    response.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    Ok(response)
                } else {
                    apigw::map_result(&result)
                        .map(|m| {
                            let mut response = http::Response::new(m.body);
                            *response.status_mut() = m.status;
                            *response.headers_mut() = m.headers;
                            response
                        })
                        .map_err(InvokeError::BadResponse)
                };
                (mapped, true)
            }
            // A fatal error (an uncaught exception, an unhandled rejection) means the runtime is
            // exiting, as on Lambda: the next event gets a new instance.
            Ended::Answer(Ok(Reply::Error {
                error_type,
                message,
                fatal,
            })) => (
                Err(InvokeError::Handler {
                    error_type,
                    message,
                }),
                !fatal,
            ),
            Ended::Answer(Ok(Reply::TooLarge)) => (
                Err(InvokeError::ResponseTooLarge {
                    limit: PAYLOAD_LIMIT,
                }),
                true,
            ),
            Ended::Answer(Err(_)) => (
                Err(InvokeError::BadResponse(
                    "the runtime asked for the next event without answering this one".into(),
                )),
                false,
            ),
            Ended::Exited(status) => {
                let error = if self.guard.cgroup.as_ref().is_some_and(|c| c.oom_killed()) {
                    InvokeError::MemoryExceeded {
                        limit_mib: self.function.memory_bytes >> 20,
                    }
                } else {
                    InvokeError::Crashed(format!("{status}; `nimbus logs` shows its last output"))
                };
                (Err(error), false)
            }
            Ended::TimedOut => {
                self.guard.kill();
                (Err(InvokeError::Timeout(context.timeout)), false)
            }
        };

        let output = self.logs.take().await;
        let logs = self.frame_logs(&context.request_id, output, duration, &response);
        let response = response.map(|r| {
            r.map(|body| {
                Full::new(body)
                    .map_err(|never| match never {})
                    .boxed_unsync()
            })
        });
        let result = response.as_ref().map(|_| ()).map_err(Clone::clone);
        let instance: Option<Box<dyn Instance>> = if keep && self.function.reuse {
            Some(self)
        } else {
            None
        };
        Invoked {
            response,
            completion: futures::future::ready(Completion {
                result,
                logs,
                instance,
            })
            .boxed(),
        }
    }
}

impl ProcessInstance {
    /// The invocation's output between Lambda's `START` and `END` lines, then `REPORT`.
    fn frame_logs(
        &mut self,
        request_id: &str,
        output: String,
        duration: Duration,
        response: &Result<http::Response<Bytes>, InvokeError>,
    ) -> String {
        let mut logs = String::with_capacity(output.len() + 256);
        let init = self.init.take();
        if let Some((_, init_output)) = &init {
            let _ = writeln!(
                logs,
                "INIT_START Runtime Version: {}",
                self.function.runtime_name
            );
            logs.push_str(init_output);
        }
        let _ = writeln!(
            logs,
            "START RequestId: {request_id} Version: {}",
            self.function.version
        );
        logs.push_str(&output);
        if let Err(error) = response {
            let _ = writeln!(logs, "{request_id} {error}");
        }
        let _ = writeln!(logs, "END RequestId: {request_id}");
        let millis = duration.as_secs_f64() * 1000.0;
        let max_used = self
            .guard
            .cgroup
            .as_ref()
            .and_then(|c| c.peak_memory())
            .or_else(|| self.guard.pid.and_then(peak_rss))
            .map(|bytes| bytes.div_ceil(1 << 20))
            .unwrap_or(0);
        let _ = write!(
            logs,
            "REPORT RequestId: {request_id}\tDuration: {millis:.2} ms\tBilled Duration: {} ms\tMemory Size: {} MB\tMax Memory Used: {max_used} MB",
            (millis.ceil() as u64).max(1),
            self.function.memory_bytes >> 20,
        );
        if let Some((init_duration, _)) = init {
            let _ = write!(
                logs,
                "\tInit Duration: {:.2} ms",
                init_duration.as_secs_f64() * 1000.0
            );
        }
        logs.push('\n');
        logs
    }
}

/// The whole request body, refused past `limit` bytes.
async fn read_body(mut body: nimbus_runtime::Body, limit: u64) -> Result<Bytes, InvokeError> {
    let mut collected = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            InvokeError::BadEvent(format!("the request body could not be read: {e}"))
        })?;
        if let Ok(data) = frame.into_data() {
            if collected.len() as u64 + data.len() as u64 > limit {
                return Err(InvokeError::EventTooLarge { limit });
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

/// Peak resident memory of a process (`VmHWM`), for hosts without cgroups.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
            Ok(signal) => format!("killed by {signal}"),
            Err(_) => format!("killed by signal {signal}"),
        },
        _ => status.to_string(),
    }
}

/// An X-Ray-shaped trace header, so runtimes that parse it find what they expect.
fn trace_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let random: u128 = rand::random();
    let parent: u64 = rand::random();
    format!(
        "Root=1-{now:08x}-{:024x};Parent={parent:016x};Sampled=0",
        random & ((1u128 << 96) - 1)
    )
}

fn tail(text: &str, max: usize) -> String {
    let text = text.trim_end();
    if text.len() <= max {
        return text.to_owned();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}
