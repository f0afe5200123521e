//! `wasi:keyvalue` 0.2.0-draft2 for guests, over the platform's durable [`KvStore`].
//!
//! `store.open` opens a store of the calling function's app that its grants name (anything
//! else is `access-denied`); a read-only grant refuses writes the same way. A compare-and-swap
//! handle holds the version it read, and its swap writes only if the entry is still at that
//! version, so concurrent swaps cannot lose an update.
//!
//! [`KvStore`]: nimbus_store::KvStore

use crate::host::HostState;
pub(crate) use bindings::wasi::keyvalue::store;
use bindings::wasi::keyvalue::{atomics, batch};
use nimbus_store::{KvCondition, KvEntry, KvError, KvStore, KvStoreId};
use std::sync::Arc;
use wasmtime::component::Resource;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/keyvalue",
        world: "wasi:keyvalue/imports",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
            "wasi:keyvalue/atomics.cas": super::Cas,
        },
    });
}

/// The key-value stores one function may use: the platform's store, limited to what its
/// grants (`kv = [...]`) name.
#[derive(Clone)]
pub(crate) struct KeyValue {
    pub(crate) store: Arc<dyn KvStore>,
    pub(crate) app: Arc<str>,
    pub(crate) grants: Arc<[nimbus_core::KvGrant]>,
}

impl KeyValue {
    /// Store `name` of the function's app, and whether the function may write it; `None` if
    /// its grants do not name it.
    pub(crate) fn open(&self, name: &str) -> Option<(KvStoreId, bool)> {
        let grant = self.grants.iter().find(|g| g.store.as_str() == name)?;
        Some((
            KvStoreId::new(&*self.app, grant.store.as_str()),
            grant.write,
        ))
    }
}

/// Keys per `list-keys` page.
pub(crate) const LIST_PAGE: usize = 1000;
/// Most bytes of values one `get-many` answers: the host holds them all before the guest
/// sees any, so a guest asking for the same 1 MiB value ten thousand times must not make the
/// host hold 10 GiB.
pub const MAX_GET_MANY_BYTES: usize = 32 << 20;
/// Keys read per store call within one `get-many`.
const GET_MANY_CHUNK: usize = 16;

/// An open store (a `wasi:keyvalue` bucket or a Spin store).
pub struct Bucket {
    pub(crate) id: KvStoreId,
    pub(crate) write: bool,
}

/// A compare-and-swap handle: the key and the entry it read.
pub struct Cas {
    id: KvStoreId,
    write: bool,
    key: String,
    read: Option<KvEntry>,
}

pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<HostState>,
) -> wasmtime::Result<()> {
    bindings::Imports::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
        linker,
        |state| state,
    )
}

type Outcome<T> = wasmtime::Result<Result<T, store::Error>>;

pub(crate) fn error(error: KvError) -> store::Error {
    match error {
        KvError::NoSuchStore(_) => store::Error::NoSuchStore,
        KvError::Backend(_) => {
            let cause = std::error::Error::source(&error).map(ToString::to_string);
            tracing::error!(error = %error, cause = ?cause, "key-value storage failed");
            store::Error::Other(error.to_string())
        }
        other => store::Error::Other(other.to_string()),
    }
}

impl HostState {
    pub(crate) fn kv(&self) -> Result<&KeyValue, store::Error> {
        self.kv.as_ref().ok_or(store::Error::AccessDenied)
    }

    /// The platform's store, held apart from `self` across awaits.
    pub(crate) fn kv_store(&self) -> Result<Arc<dyn KvStore>, store::Error> {
        self.kv().map(|kv| kv.store.clone())
    }

    /// The open store behind `bucket`, refused if `write` is asked of a read-only grant.
    pub(crate) fn bucket(
        &self,
        bucket: &Resource<Bucket>,
        write: bool,
    ) -> wasmtime::Result<Result<KvStoreId, store::Error>> {
        let bucket = self.table.get(bucket)?;
        if write && !bucket.write {
            tracing::warn!(
                store = %bucket.id,
                "key-value write refused: the function's grant of this store is read-only \
                 (\"NAME:read\"); grant \"NAME\" to write"
            );
            return Ok(Err(store::Error::AccessDenied));
        }
        Ok(Ok(bucket.id.clone()))
    }
}

/// `?` for the inner result: return the guest-visible error as the call's outcome.
macro_rules! guest {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(error) => return Ok(Err(error.into())),
        }
    };
}

impl HostState {
    /// Open store `identifier` of the function's app for the guest (through `interface`):
    /// refused unless the function's grants name it.
    pub(crate) fn open_bucket(
        &mut self,
        identifier: &str,
        interface: &str,
    ) -> Outcome<Resource<Bucket>> {
        let kv = guest!(self.kv());
        let Some((id, write)) = kv.open(identifier) else {
            // `access-denied` carries no text to the guest; the operator's log says why.
            tracing::warn!(
                app = %kv.app,
                store = %identifier,
                "{interface} open refused: add \"{identifier}\" to the function's `kv` in the \
                 manifest (and declare [kv.{identifier}])"
            );
            return Ok(Err(store::Error::AccessDenied));
        };
        let resource = self.table.push(Bucket { id, write })?;
        Ok(Ok(resource))
    }
}

impl store::Host for HostState {
    async fn open(&mut self, identifier: String) -> Outcome<Resource<Bucket>> {
        self.open_bucket(&identifier, "wasi:keyvalue store.open")
    }
}

impl store::HostBucket for HostState {
    async fn get(&mut self, bucket: Resource<Bucket>, key: String) -> Outcome<Option<Vec<u8>>> {
        let id = guest!(self.bucket(&bucket, false)?);
        let entry = guest!(guest!(self.kv_store()).get(&id, &key).await.map_err(error));
        Ok(Ok(entry.map(|e| e.value.to_vec())))
    }

    async fn set(&mut self, bucket: Resource<Bucket>, key: String, value: Vec<u8>) -> Outcome<()> {
        let id = guest!(self.bucket(&bucket, true)?);
        let store = guest!(self.kv_store());
        guest!(
            store
                .set(&id, &key, value.into(), KvCondition::Always, None)
                .await
                .map_err(error)
        );
        Ok(Ok(()))
    }

    async fn delete(&mut self, bucket: Resource<Bucket>, key: String) -> Outcome<()> {
        let id = guest!(self.bucket(&bucket, true)?);
        guest!(
            guest!(self.kv_store())
                .delete(&id, &key)
                .await
                .map_err(error)
        );
        Ok(Ok(()))
    }

    async fn exists(&mut self, bucket: Resource<Bucket>, key: String) -> Outcome<bool> {
        let id = guest!(self.bucket(&bucket, false)?);
        let entry = guest!(guest!(self.kv_store()).get(&id, &key).await.map_err(error));
        Ok(Ok(entry.is_some()))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<String>,
    ) -> Outcome<store::KeyResponse> {
        let id = guest!(self.bucket(&bucket, false)?);
        let store = guest!(self.kv_store());
        let page = guest!(
            store
                .list_keys(&id, cursor.as_deref(), LIST_PAGE)
                .await
                .map_err(error)
        );
        Ok(Ok(store::KeyResponse {
            keys: page.keys,
            cursor: page.next,
        }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl HostState {
    /// A fresh handle on `key`, holding its current entry.
    async fn cas_of(&mut self, id: KvStoreId, write: bool, key: String) -> Outcome<Resource<Cas>> {
        let read = guest!(guest!(self.kv_store()).get(&id, &key).await.map_err(error));
        Ok(Ok(self.table.push(Cas {
            id,
            write,
            key,
            read,
        })?))
    }
}

impl atomics::Host for HostState {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: i64,
    ) -> Outcome<i64> {
        let id = guest!(self.bucket(&bucket, true)?);
        let value = guest!(
            guest!(self.kv_store())
                .increment(&id, &key, delta)
                .await
                .map_err(error)
        );
        Ok(Ok(value))
    }

    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let Cas {
            id,
            write,
            key,
            read,
        } = self.table.delete(cas)?;
        if !write {
            return Ok(Err(atomics::CasError::StoreError(
                store::Error::AccessDenied,
            )));
        }
        let condition = match &read {
            Some(entry) => KvCondition::Version(entry.version),
            None => KvCondition::Absent,
        };
        let store = match self.kv_store() {
            Ok(store) => store,
            Err(e) => return Ok(Err(atomics::CasError::StoreError(e))),
        };
        match store.set(&id, &key, value.into(), condition, None).await {
            Ok(Some(_)) => Ok(Ok(())),
            Ok(None) => match self.cas_of(id, write, key).await? {
                Ok(fresh) => Ok(Err(atomics::CasError::CasFailed(fresh))),
                Err(e) => Ok(Err(atomics::CasError::StoreError(e))),
            },
            Err(e) => Ok(Err(atomics::CasError::StoreError(error(e)))),
        }
    }
}

impl atomics::HostCas for HostState {
    async fn new(&mut self, bucket: Resource<Bucket>, key: String) -> Outcome<Resource<Cas>> {
        let (id, write) = {
            let bucket = self.table.get(&bucket)?;
            (bucket.id.clone(), bucket.write)
        };
        self.cas_of(id, write, key).await
    }

    async fn current(&mut self, cas: Resource<Cas>) -> Outcome<Option<Vec<u8>>> {
        let cas = self.table.get(&cas)?;
        Ok(Ok(cas.read.as_ref().map(|e| e.value.to_vec())))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for HostState {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> Outcome<Vec<(String, Option<Vec<u8>>)>> {
        let id = guest!(self.bucket(&bucket, false)?);
        let store = guest!(self.kv_store());
        let (mut found, mut bytes) = (Vec::with_capacity(keys.len()), 0usize);
        for chunk in keys.chunks(GET_MANY_CHUNK) {
            let entries = guest!(store.get_many(&id, chunk).await.map_err(error));
            for (key, entry) in chunk.iter().zip(entries) {
                bytes += entry.as_ref().map_or(0, |e| e.value.len());
                if bytes > MAX_GET_MANY_BYTES {
                    return Ok(Err(store::Error::Other(format!(
                        "get-many of {} keys would answer more than {MAX_GET_MANY_BYTES} bytes \
                         of values; ask for fewer keys at a time",
                        keys.len()
                    ))));
                }
                found.push((key.clone(), entry.map(|e| e.value.to_vec())));
            }
        }
        Ok(Ok(found))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> Outcome<()> {
        let id = guest!(self.bucket(&bucket, true)?);
        let entries = key_values
            .into_iter()
            .map(|(key, value)| (key, value.into()))
            .collect();
        guest!(
            guest!(self.kv_store())
                .set_many(&id, entries)
                .await
                .map_err(error)
        );
        Ok(Ok(()))
    }

    async fn delete_many(&mut self, bucket: Resource<Bucket>, keys: Vec<String>) -> Outcome<()> {
        let id = guest!(self.bucket(&bucket, true)?);
        guest!(
            guest!(self.kv_store())
                .delete_many(&id, &keys)
                .await
                .map_err(error)
        );
        Ok(Ok(()))
    }
}
