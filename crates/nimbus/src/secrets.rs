//! Credentials' commands: app secrets (`secrets set`, `rotate`, `ls`, `rm`; values read from
//! standard input or a file, never from an argument another user could see in `ps`) and API
//! keys (`apikeys create`, `ls`, `rm`).

use crate::commands::Failure;
use crate::{ApiKeysCommand, Cli, SecretsCommand, TokensCommand, client, output};
use nimbus_api::SecretEntry;
use std::io::{IsTerminal, Read};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

fn when(ms: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The value: `file`'s bytes exactly, or standard input less one trailing newline.
fn read_value(file: Option<&Path>) -> Result<Vec<u8>, Failure> {
    if let Some(file) = file {
        return std::fs::read(file)
            .map_err(|e| Failure::Local(format!("read {}: {e}", file.display())));
    }
    let mut stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Type the value, then press Enter and Ctrl-D:");
    }
    let mut value = Vec::new();
    stdin
        .read_to_end(&mut value)
        .map_err(|e| Failure::Local(format!("read the value from standard input: {e}")))?;
    if value.ends_with(b"\n") {
        value.pop();
        if value.ends_with(b"\r") {
            value.pop();
        }
    }
    Ok(value)
}

fn print_entry(cli: &Cli, app: &str, entry: &SecretEntry) {
    if cli.json {
        output::json(entry);
    } else {
        println!(
            "secret {app}/{} is at version {}",
            entry.name, entry.current
        );
    }
}

fn plan(key: &nimbus_api::ApiKeyEntry) -> String {
    let mut parts = Vec::new();
    if let (Some(rate), Some(per_ms)) = (key.rate, key.rate_per_ms) {
        let unit = match per_ms {
            1_000 => "s".to_owned(),
            60_000 => "min".to_owned(),
            3_600_000 => "h".to_owned(),
            86_400_000 => "day".to_owned(),
            other => format!("{other}ms"),
        };
        parts.push(format!("{rate}/{unit} burst {}", key.burst.unwrap_or(rate)));
    }
    if let Some(quota) = key.quota_per_day {
        parts.push(format!("{quota}/day quota"));
    }
    if parts.is_empty() {
        "unlimited".into()
    } else {
        parts.join(", ")
    }
}

pub(crate) async fn api_keys(cli: &Cli, command: &ApiKeysCommand) -> Result<(), Failure> {
    let client = client::connect(cli)?;
    match command {
        ApiKeysCommand::Create {
            app,
            name,
            rate,
            burst,
            quota,
        } => {
            let key = client
                .create_api_key(
                    app,
                    &nimbus_api::CreateApiKeyRequest {
                        name: name.clone(),
                        rate: rate.clone(),
                        burst: *burst,
                        quota_per_day: *quota,
                    },
                )
                .await?;
            if cli.json {
                output::json(&key);
            } else {
                eprintln!(
                    "API key {} for app {app} ({}); it is shown only now:",
                    key.id,
                    plan(&key)
                );
                println!("{}", key.key.as_deref().unwrap_or_default());
            }
        }
        ApiKeysCommand::Ls { app } => {
            let keys = client.api_keys(app).await?;
            if cli.json {
                output::json(&keys);
                return Ok(());
            }
            let rows = keys
                .iter()
                .map(|k| {
                    vec![
                        k.id.clone(),
                        k.name.clone().unwrap_or_default(),
                        plan(k),
                        when(k.created_ms),
                    ]
                })
                .collect();
            output::table(&["ID", "NAME", "PLAN", "CREATED"], rows);
        }
        ApiKeysCommand::Rm { id, app } => {
            client.remove_api_key(app, id).await?;
            if cli.json {
                output::json(&serde_json::json!({ "revoked": id }));
            } else {
                println!("revoked API key {id} of app {app}");
            }
        }
    }
    Ok(())
}

pub(crate) async fn tokens(cli: &Cli, command: &TokensCommand) -> Result<(), Failure> {
    let client = client::connect(cli)?;
    match command {
        TokensCommand::Create { scope, name } => {
            let created = client
                .create_token(&nimbus_api::CreateTokenRequest {
                    scope: scope.clone(),
                    name: name.clone(),
                })
                .await?;
            if cli.json {
                output::json(&created);
            } else {
                eprintln!(
                    "admin token {} with the {} scope; it is shown only now:",
                    created.id, created.scope
                );
                println!("{}", created.token.as_deref().unwrap_or_default());
            }
        }
        TokensCommand::Ls => {
            let tokens = client.tokens().await?;
            if cli.json {
                output::json(&tokens);
                return Ok(());
            }
            let rows = tokens
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.scope.clone(),
                        t.name.clone().unwrap_or_default(),
                        when(t.created_ms),
                    ]
                })
                .collect();
            output::table(&["ID", "SCOPE", "NAME", "CREATED"], rows);
        }
        TokensCommand::Rm { id } => {
            client.remove_token(id).await?;
            if cli.json {
                output::json(&serde_json::json!({ "revoked": id }));
            } else {
                println!("revoked admin token {id}");
            }
        }
    }
    Ok(())
}

pub(crate) async fn audit(cli: &Cli, after: u64, limit: usize) -> Result<(), Failure> {
    let client = client::connect(cli)?;
    // Page through to the end, keeping the newest `limit`.
    let mut entries: Vec<nimbus_api::AuditRecord> = Vec::new();
    let mut from = after;
    loop {
        let page = client.audit(from, 1000).await?;
        let Some(last) = page.last() else { break };
        from = last.seq;
        entries.extend(page);
        if entries.len() > limit {
            entries.drain(..entries.len() - limit);
        }
    }
    if cli.json {
        output::json(&entries);
        return Ok(());
    }
    let rows = entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                when(e.time_ms),
                e.actor.clone(),
                format!("{} {}", e.method, e.path),
                e.status.to_string(),
            ]
        })
        .collect();
    output::table(&["SEQ", "TIME", "WHO", "REQUEST", "STATUS"], rows);
    Ok(())
}

pub(crate) async fn run(cli: &Cli, command: &SecretsCommand) -> Result<(), Failure> {
    let client = client::connect(cli)?;
    match command {
        SecretsCommand::Set { app, name, file } | SecretsCommand::Rotate { app, name, file } => {
            let rotate = matches!(command, SecretsCommand::Rotate { .. });
            let value = read_value(file.as_deref())?;
            let entry = client.set_secret(app, name, value, rotate).await?;
            print_entry(cli, app, &entry);
        }
        SecretsCommand::Ls { app } => {
            let secrets = client.secrets(app).await?;
            if cli.json {
                output::json(&secrets);
                return Ok(());
            }
            let rows = secrets
                .iter()
                .map(|s| {
                    vec![
                        s.name.clone(),
                        s.current.to_string(),
                        s.versions.len().to_string(),
                        s.versions
                            .last()
                            .map(|v| when(v.created_ms))
                            .unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(&["NAME", "VERSION", "VERSIONS KEPT", "SET"], rows);
        }
        SecretsCommand::Rm { app, name } => {
            client.remove_secret(app, name).await?;
            if cli.json {
                output::json(&serde_json::json!({ "removed": name }));
            } else {
                println!("removed secret {app}/{name}");
            }
        }
    }
    Ok(())
}
