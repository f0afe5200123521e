//! The executor the platform sees: one per function kind behind the one `Executor` trait,
//! chosen by the function's spec (`component` → wasm, `runtime` → process).

use nimbus_core::{FunctionKind, FunctionSpec};
use nimbus_runtime::{Artifact, Executor, FunctionIdentity, LoadError, LoadSource, LoadedFunction};
use nimbus_runtime_process::ProcessExecutor;
use nimbus_runtime_wasm::WasmExecutor;
use std::sync::Arc;

pub(crate) struct Executors {
    pub wasm: Arc<WasmExecutor>,
    pub process: Arc<ProcessExecutor>,
}

#[async_trait::async_trait]
impl Executor for Executors {
    async fn load(
        &self,
        identity: &FunctionIdentity,
        spec: &FunctionSpec,
        artifact: &Artifact,
    ) -> Result<(Arc<dyn LoadedFunction>, LoadSource), LoadError> {
        match spec.kind {
            FunctionKind::Wasm => self.wasm.load(identity, spec, artifact).await,
            FunctionKind::Process { .. } => self.process.load(identity, spec, artifact).await,
        }
    }
}
