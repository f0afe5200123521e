//! The WebAssembly executor: runs `wasi:http/proxy` components on wasmtime.
//!
//! One [`WasmExecutor`] per process holds the shared `Engine` (component model, pooling
//! allocator, epoch interruption) and one `Linker` with `wasi:cli` and `wasi:http` linked, so
//! components built with Rust std, componentize-py or componentize-js run unmodified.
//!
//! Lifecycle: [`WasmExecutor::load`] compiles a component once per content digest and caches
//! the compiled artifact on disk (keyed by the SHA-256 of the wasm and the engine's
//! compatibility hash), so a restart deserializes instead of recompiling; it then links and
//! type-checks a `ProxyPre` once per version. Instances are a `Store` plus the instantiated
//! proxy; see [`instance`] for limits, timeouts and reuse.
//!
//! This crate does not know about routes, pools or status codes: it answers the
//! `nimbus-runtime` contract and nothing more.

mod cache;
mod host;
mod instance;
mod keyvalue;
mod spin_kv;

use nimbus_core::{ErrorCode, FunctionSpec};
use nimbus_runtime::{Artifact, Executor, FunctionIdentity, LoadError, LoadSource, LoadedFunction};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::error::Context as _;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use host::HostState;

/// How often the epoch advances. Guests yield to the async runtime at every tick and are
/// stopped at the first tick past their deadline, so this bounds both timeout precision and
/// how long a CPU-bound guest can hold a worker thread.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Executor settings.
#[derive(Clone)]
pub struct WasmConfig {
    /// Where compiled components are cached.
    pub cache_dir: PathBuf,
    /// Instance slots the pooling allocator reserves (all functions together).
    pub max_instances: u32,
    /// Serves guests' requests to `http://nimbus.internal/...` (queues, the event bus).
    pub services: Option<Arc<dyn nimbus_runtime::Services>>,
    /// The key-value stores' storage, which guests reach through `wasi:keyvalue` as their
    /// grants allow (through `services`).
    pub kv: Option<Arc<dyn nimbus_store::KvStore>>,
}

pub struct WasmExecutor {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    cache: cache::CompiledCache,
    pooling: bool,
    ticker_stop: Arc<AtomicBool>,
    services: Option<Arc<dyn nimbus_runtime::Services>>,
    kv: Option<Arc<dyn nimbus_store::KvStore>>,
}

impl WasmExecutor {
    pub fn new(config: WasmConfig) -> wasmtime::Result<WasmExecutor> {
        let engine = match Engine::new(&engine_config(Some(config.max_instances))) {
            Ok(engine) => (engine, true),
            Err(error) => {
                // The pooling allocator reserves virtual memory up front; hosts with a low
                // address-space limit refuse it. Fall back rather than fail to start.
                tracing::warn!(error = %error, "pooling allocator unavailable, using on-demand allocation");
                (
                    Engine::new(&engine_config(None)).context("create wasmtime engine")?,
                    false,
                )
            }
        };
        let (engine, pooling) = engine;
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).context("link wasi")?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .context("link wasi:http")?;
        keyvalue::add_to_linker(&mut linker).context("link wasi:keyvalue")?;
        spin_kv::add_to_linker(&mut linker).context("link fermyon:spin/key-value")?;
        let cache = cache::CompiledCache::new(config.cache_dir, &engine)
            .context("open compiled-artifact cache")?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let stop = ticker_stop.clone();
        std::thread::Builder::new()
            .name("nimbus-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .context("start epoch ticker")?;

        Ok(WasmExecutor {
            engine,
            linker: Arc::new(linker),
            cache,
            pooling,
            ticker_stop,
            services: config.services,
            kv: config.kv,
        })
    }

    /// Whether the pooling allocator is in use (it is unless the host refused it).
    pub fn is_pooling(&self) -> bool {
        self.pooling
    }
}

impl Drop for WasmExecutor {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn engine_config(pool_slots: Option<u32>) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    if let Some(slots) = pool_slots {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(slots);
        pool.total_core_instances(slots.saturating_mul(8));
        pool.total_memories(slots.saturating_mul(2));
        pool.total_tables(slots.saturating_mul(8));
        pool.max_memories_per_component(4);
        pool.max_tables_per_component(16);
        pool.max_core_instances_per_component(32);
        pool.max_memory_size(FunctionSpec::MAX_MEMORY_BYTES as usize);
        pool.total_stacks(slots);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

#[async_trait::async_trait]
impl Executor for WasmExecutor {
    async fn load(
        &self,
        identity: &FunctionIdentity,
        spec: &FunctionSpec,
        artifact: &Artifact,
    ) -> Result<(Arc<dyn LoadedFunction>, LoadSource), LoadError> {
        let engine = self.engine.clone();
        let cache = self.cache.clone();
        let artifact = artifact.clone();
        // Compiling is CPU-heavy and writes files: keep it off the async workers.
        let (component, source) =
            tokio::task::spawn_blocking(move || cache.load(&engine, &artifact))
                .await
                .map_err(|e| LoadError {
                    code: ErrorCode::Internal,
                    message: format!("compile task failed: {e}"),
                })??;

        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError {
                code: ErrorCode::IncompatibleComponent,
                message: format!("component imports something nimbus does not provide: {e:#}"),
            })?;
        let pre = wasmtime_wasi_http::p2::bindings::ProxyPre::new(instance_pre).map_err(|e| LoadError {
            code: ErrorCode::IncompatibleComponent,
            message: format!(
                "component does not export wasi:http/incoming-handler@0.2 (is it built as an HTTP handler, e.g. with #[wstd::http_server]?): {e:#}"
            ),
        })?;
        let local = self.services.clone().map(|services| {
            let caller = nimbus_runtime::Caller {
                app: identity.app.clone(),
                function: Arc::from(spec.name.as_str()),
            };
            (services, caller)
        });
        let loaded =
            instance::WasmFunction::new(self.engine.clone(), pre, spec, local, self.kv.clone());
        Ok((Arc::new(loaded), source))
    }
}

/// Check a component's bytes without compiling: is it a WebAssembly component at all?
pub(crate) fn classify_binary(bytes: &[u8]) -> Result<(), LoadError> {
    let invalid = |message: &str| LoadError {
        code: ErrorCode::InvalidComponent,
        message: message.to_owned(),
    };
    let Some((magic, version)) = bytes.get(..4).zip(bytes.get(4..8)) else {
        return Err(invalid(
            "not a WebAssembly binary (missing the \\0asm header)",
        ));
    };
    if magic != b"\0asm" {
        return Err(invalid(
            "not a WebAssembly binary (missing the \\0asm header)",
        ));
    }
    if version == [1, 0, 0, 0] {
        return Err(invalid(
            "this is a core WebAssembly module, not a component; build with --target wasm32-wasip2 (or wrap it with `wasm-tools component new`)",
        ));
    }
    Ok(())
}
