//! Spin's `fermyon:spin/key-value@2.0.0` for guests built with `spin-sdk`, over the same
//! stores, grants and limits as `wasi:keyvalue` ([`crate::keyvalue`]): a Spin store is a
//! bucket by another name, so a component moves between Spin and nimbus unchanged.

use crate::host::HostState;
use crate::keyvalue::{Bucket, LIST_PAGE, error, store};
use bindings::fermyon::spin::key_value;
use wasmtime::component::Resource;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit/spin",
        world: "fermyon:spin/imports",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/key-value.store": crate::keyvalue::Bucket,
        },
    });
}

/// Most keys one `get-keys` answers: it returns them all at once, so the host must hold them
/// all; past this the guest is told to page with `wasi:keyvalue`'s `list-keys`.
pub const MAX_GET_KEYS: usize = 100_000;

pub(crate) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<HostState>,
) -> wasmtime::Result<()> {
    bindings::Imports::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
        linker,
        |state| state,
    )
}

type Outcome<T> = wasmtime::Result<Result<T, key_value::Error>>;

fn spin(error: store::Error) -> key_value::Error {
    match error {
        store::Error::NoSuchStore => key_value::Error::NoSuchStore,
        store::Error::AccessDenied => key_value::Error::AccessDenied,
        store::Error::Other(message) => key_value::Error::Other(message),
    }
}

/// `?` for the guest-visible error: return it, in Spin's terms, as the call's outcome.
macro_rules! guest {
    ($e:expr) => {
        match $e {
            Ok(value) => value,
            Err(error) => return Ok(Err(spin(error))),
        }
    };
}

impl key_value::Host for HostState {}

impl key_value::HostStore for HostState {
    async fn open(&mut self, label: String) -> Outcome<Resource<Bucket>> {
        Ok(self
            .open_bucket(&label, "fermyon:spin/key-value open")?
            .map_err(spin))
    }

    async fn get(&mut self, store: Resource<Bucket>, key: String) -> Outcome<Option<Vec<u8>>> {
        let id = guest!(self.bucket(&store, false)?);
        let kv = guest!(self.kv_store());
        let entry = guest!(kv.get(&id, &key).await.map_err(error));
        Ok(Ok(entry.map(|e| e.value.to_vec())))
    }

    async fn set(&mut self, store: Resource<Bucket>, key: String, value: Vec<u8>) -> Outcome<()> {
        let id = guest!(self.bucket(&store, true)?);
        let kv = guest!(self.kv_store());
        guest!(
            kv.set(
                &id,
                &key,
                value.into(),
                nimbus_store::KvCondition::Always,
                None
            )
            .await
            .map_err(error)
        );
        Ok(Ok(()))
    }

    async fn delete(&mut self, store: Resource<Bucket>, key: String) -> Outcome<()> {
        let id = guest!(self.bucket(&store, true)?);
        let kv = guest!(self.kv_store());
        guest!(kv.delete(&id, &key).await.map_err(error));
        Ok(Ok(()))
    }

    async fn exists(&mut self, store: Resource<Bucket>, key: String) -> Outcome<bool> {
        let id = guest!(self.bucket(&store, false)?);
        let kv = guest!(self.kv_store());
        let entry = guest!(kv.get(&id, &key).await.map_err(error));
        Ok(Ok(entry.is_some()))
    }

    async fn get_keys(&mut self, store: Resource<Bucket>) -> Outcome<Vec<String>> {
        let id = guest!(self.bucket(&store, false)?);
        let kv = guest!(self.kv_store());
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = guest!(
                kv.list_keys(&id, cursor.as_deref(), LIST_PAGE)
                    .await
                    .map_err(error)
            );
            keys.extend(page.keys);
            if keys.len() > MAX_GET_KEYS {
                return Ok(Err(key_value::Error::Other(format!(
                    "the store holds more than {MAX_GET_KEYS} keys, too many for get-keys; \
                     page through them with wasi:keyvalue's list-keys"
                ))));
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(Ok(keys)),
            }
        }
    }

    async fn drop(&mut self, store: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}
