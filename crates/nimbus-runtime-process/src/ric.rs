//! nimbus's own runtime interface clients for the managed runtimes, embedded in the binary and
//! written next to the executor's work directory at start.
//!
//! Each is one standard-library-only file: it loads the handler named by `_HANDLER` from
//! `LAMBDA_TASK_ROOT`, then loops on the Runtime API at `AWS_LAMBDA_RUNTIME_API`, calling the
//! handler with the event and a context object that behaves as Lambda documents. No pip or npm
//! packages are needed to run a function.

use std::path::Path;

pub const PYTHON_FILE: &str = "nimbus_ric.py";
pub const NODE_FILE: &str = "nimbus_ric.cjs";

const PYTHON: &str = include_str!("ric/nimbus_ric.py");
const NODE: &str = include_str!("ric/nimbus_ric.cjs");

/// Write the interface clients into `dir` (replacing older copies atomically).
pub fn install(dir: &Path) -> std::io::Result<()> {
    for (name, text) in [(PYTHON_FILE, PYTHON), (NODE_FILE, NODE)] {
        let staging = dir.join(format!(".{name}.{}", std::process::id()));
        std::fs::write(&staging, text)?;
        std::fs::rename(&staging, dir.join(name))?;
    }
    Ok(())
}
