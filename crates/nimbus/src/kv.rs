//! The key-value service's commands: `kv ls`, `kv get`, `kv set`, `kv rm`.

use crate::commands::Failure;
use crate::{Cli, KvCommand, client, output};
use std::io::{Read, Write};

pub(crate) async fn run(cli: &Cli, command: &KvCommand) -> Result<(), Failure> {
    let client = client::connect(cli)?;
    match command {
        KvCommand::Ls {
            store: None, app, ..
        } => {
            let stores = client.kv_stores(app).await?;
            if cli.json {
                output::json(&stores);
            } else {
                for store in stores {
                    println!("{store}");
                }
            }
        }
        KvCommand::Ls {
            store: Some(store),
            app,
            after,
            limit,
        } => {
            let mut keys = Vec::new();
            let mut after = after.clone();
            while keys.len() < *limit {
                let page = client
                    .kv_keys(
                        app,
                        store,
                        after.as_deref(),
                        (*limit - keys.len()).min(1000),
                    )
                    .await?;
                keys.extend(page.keys);
                after = page.next;
                if after.is_none() {
                    break;
                }
            }
            if cli.json {
                output::json(&serde_json::json!({"keys": keys, "next": after}));
            } else {
                for key in &keys {
                    println!("{key}");
                }
                if let Some(next) = after {
                    eprintln!("(more keys; continue with --after {next:?})");
                }
            }
        }
        KvCommand::Get { store, key, app } => {
            let value = client.kv_get(app, store, key).await?;
            if cli.json {
                match String::from_utf8(value) {
                    Ok(text) => output::json(&serde_json::json!({"key": key, "value": text})),
                    Err(bytes) => {
                        use base64::Engine as _;
                        let encoded =
                            base64::engine::general_purpose::STANDARD.encode(bytes.as_bytes());
                        output::json(&serde_json::json!({"key": key, "value_base64": encoded}));
                    }
                }
            } else {
                std::io::stdout()
                    .write_all(&value)
                    .map_err(|e| Failure::Local(format!("stdout: {e}")))?;
            }
        }
        KvCommand::Set {
            store,
            key,
            value,
            app,
            ttl,
        } => {
            let bytes = if value == "-" {
                let mut bytes = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .map_err(|e| Failure::Local(format!("stdin: {e}")))?;
                bytes
            } else {
                value.clone().into_bytes()
            };
            let ttl = ttl
                .as_deref()
                .map(|text| {
                    humantime::parse_duration(text)
                        .map(|d| d.as_secs().max(1))
                        .map_err(|_| {
                            Failure::Usage(format!(
                                "--ttl {text:?} is not a duration: write 30s, 10m, 1d"
                            ))
                        })
                })
                .transpose()?;
            client.kv_set(app, store, key, bytes, ttl).await?;
            if cli.json {
                output::json(&serde_json::json!({"key": key, "stored": true}));
            }
        }
        KvCommand::Rm { store, key, app } => {
            let deleted = client.kv_delete(app, store, key).await?;
            if cli.json {
                output::json(&serde_json::json!({"key": key, "deleted": deleted}));
            } else if !deleted {
                eprintln!("{key:?} had no entry");
            }
        }
    }
    Ok(())
}
