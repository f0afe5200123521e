//! The compiled-artifact cache: compile a component once, ever.
//!
//! Entries are `<cache>/<wasm sha256>-<engine hash>.cwasm`. The engine hash covers wasmtime's
//! version and every setting that affects compiled code, so a changed engine misses instead of
//! loading incompatible code (and wasmtime re-checks compatibility on load anyway). Writes go to a
//! temporary file renamed into place, so a crash never leaves a torn entry behind.

use crate::classify_binary;
use nimbus_core::ErrorCode;
use nimbus_runtime::{Artifact, LoadError, LoadSource};
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime::component::Component;

#[derive(Clone)]
pub(crate) struct CompiledCache {
    dir: Arc<PathBuf>,
    engine_hash: Arc<str>,
}

impl CompiledCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> std::io::Result<CompiledCache> {
        std::fs::create_dir_all(&dir)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = format!("{:016x}", hasher.finish());
        Ok(CompiledCache {
            dir: Arc::new(dir),
            engine_hash: Arc::from(engine_hash),
        })
    }

    /// Load `artifact` compiled for `engine`, from the cache if possible. Blocking.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        artifact: &Artifact,
    ) -> Result<(Component, LoadSource), LoadError> {
        let path = self
            .dir
            .join(format!("{}-{}.cwasm", artifact.digest, self.engine_hash));
        if path.exists() {
            // SAFETY: the cache directory is private to nimbus (inside its data directory) and
            // entries are only ever written by `Component::serialize` below, renamed into place
            // atomically; wasmtime additionally validates the header and engine compatibility.
            #[allow(unsafe_code)]
            let cached = unsafe { Component::deserialize_file(engine, &path) };
            match cached {
                Ok(component) => return Ok((component, LoadSource::Cache)),
                Err(error) => {
                    tracing::warn!(path = %path.display(), error = %error, "discard unusable cache entry");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }

        classify_binary(&artifact.bytes)?;
        let component = Component::new(engine, &artifact.bytes).map_err(|e| LoadError {
            code: ErrorCode::InvalidComponent,
            message: format!("the component does not validate: {e:#}"),
        })?;
        if let Err(error) = self.store(&path, &component) {
            // A cache write failure costs a recompile after restart, nothing more.
            tracing::warn!(path = %path.display(), error = %error, "write compiled artifact to cache");
        }
        Ok((component, LoadSource::Compiled))
    }

    fn store(&self, path: &std::path::Path, component: &Component) -> wasmtime::Result<()> {
        let bytes = component.serialize()?;
        let mut tmp = tempfile::NamedTempFile::new_in(self.dir.as_path())?;
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path)?;
        Ok(())
    }
}
