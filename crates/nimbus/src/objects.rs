//! The object service's commands: `keys`, `buckets`, `objects ls` and `cp`.

use crate::commands::Failure;
use crate::{BucketsCommand, Cli, KeysCommand, ObjectsCommand, client, output};
use futures::TryStreamExt;
use nimbus_api::{Client, CreateBucketRequest, CreateKeyRequest};
use std::path::Path;
use tokio::io::AsyncWriteExt;

fn when(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

pub(crate) async fn keys(cli: &Cli, command: &KeysCommand) -> Result<(), Failure> {
    let client = client::connect(cli)?;
    match command {
        KeysCommand::Create { app, description } => {
            let key = client
                .create_key(&CreateKeyRequest {
                    app: app.clone(),
                    description: description.clone(),
                })
                .await?;
            if cli.json {
                output::json(&key);
            } else {
                println!("AWS_ACCESS_KEY_ID={}", key.id);
                println!(
                    "AWS_SECRET_ACCESS_KEY={}",
                    key.secret.as_deref().unwrap_or_default()
                );
                eprintln!(
                    "the secret is shown only now; it reaches {}",
                    match &key.app {
                        Some(app) => format!("app {app}'s buckets"),
                        None => "every bucket (operator key)".to_owned(),
                    }
                );
            }
        }
        KeysCommand::Ls => {
            let keys = client.keys().await?;
            if cli.json {
                output::json(&keys);
            } else {
                let rows = keys
                    .into_iter()
                    .map(|k| {
                        vec![
                            k.id,
                            k.app.unwrap_or_else(|| "(operator)".into()),
                            when(k.created_ms),
                            k.description.unwrap_or_default(),
                        ]
                    })
                    .collect();
                output::table(&["ID", "APP", "CREATED", "DESCRIPTION"], rows);
            }
        }
        KeysCommand::Rm { id } => {
            let key = client.revoke_key(id).await?;
            if cli.json {
                output::json(&key);
            } else {
                println!("revoked {}", key.id);
            }
        }
    }
    Ok(())
}

pub(crate) async fn buckets(cli: &Cli, command: Option<&BucketsCommand>) -> Result<(), Failure> {
    let client = client::connect(cli)?;
    match command.unwrap_or(&BucketsCommand::Ls) {
        BucketsCommand::Ls => {
            let buckets = client.buckets().await?;
            if cli.json {
                output::json(&buckets);
            } else {
                let rows = buckets
                    .into_iter()
                    .map(|b| {
                        vec![
                            b.name,
                            b.app.unwrap_or_else(|| "(operator)".into()),
                            when(b.created_ms),
                        ]
                    })
                    .collect();
                output::table(&["BUCKET", "APP", "CREATED"], rows);
            }
        }
        BucketsCommand::Create { name, app } => {
            let bucket = client
                .create_bucket(&CreateBucketRequest {
                    name: name.clone(),
                    app: app.clone(),
                })
                .await?;
            if cli.json {
                output::json(&bucket);
            } else {
                println!("created bucket {}", bucket.name);
            }
        }
        BucketsCommand::Rm { name } => {
            let bucket = client.delete_bucket(name).await?;
            if cli.json {
                output::json(&bucket);
            } else {
                println!("removed bucket {}", bucket.name);
            }
        }
    }
    Ok(())
}

pub(crate) async fn objects(cli: &Cli, command: &ObjectsCommand) -> Result<(), Failure> {
    let client = client::connect(cli)?;
    match command {
        ObjectsCommand::Ls { bucket, prefix } => {
            let prefix = prefix.as_deref().unwrap_or("");
            let mut all = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = client
                    .objects(bucket, prefix, after.as_deref(), 1000)
                    .await?;
                after = page.objects.last().map(|o| o.key.clone());
                all.extend(page.objects);
                if !page.truncated || after.is_none() {
                    break;
                }
            }
            if cli.json {
                output::json(&all);
            } else {
                let rows = all
                    .into_iter()
                    .map(|o| {
                        vec![
                            o.key,
                            bytesize::ByteSize(o.size).to_string(),
                            when(o.last_modified_ms),
                            o.etag,
                        ]
                    })
                    .collect();
                output::table(&["KEY", "SIZE", "MODIFIED", "ETAG"], rows);
            }
        }
    }
    Ok(())
}

/// `s3://bucket/key` as (bucket, key); `None` for a local path.
fn remote(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("s3://")?;
    Some(rest.split_once('/').unwrap_or((rest, "")))
}

fn progress(len: u64, quiet: bool) -> indicatif::ProgressBar {
    if quiet || len < (8 << 20) {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bytes}/{total_bytes} [{bar:30}] {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// `nimbus cp SRC DST`: one side `s3://bucket/key`, the other a local file (`-` for standard
/// input or output).
pub(crate) async fn cp(cli: &Cli, source: &str, target: &str) -> Result<(), Failure> {
    let client = client::connect(cli)?;
    match (remote(source), remote(target)) {
        (None, Some((bucket, key))) => upload(cli, &client, source, bucket, key).await,
        (Some((bucket, key)), None) => download(cli, &client, bucket, key, target).await,
        _ => Err(Failure::Usage(
            "one side of cp is s3://BUCKET/KEY and the other a local file (or -)".into(),
        )),
    }
}

async fn upload(
    cli: &Cli,
    client: &Client,
    source: &str,
    bucket: &str,
    key: &str,
) -> Result<(), Failure> {
    let local = |e: std::io::Error| Failure::Local(format!("{source}: {e}"));
    let key = if key.is_empty() || key.ends_with('/') {
        let name = Path::new(source)
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Failure::Usage(format!("name the key: s3://{bucket}/KEY")))?;
        format!("{key}{name}")
    } else {
        key.to_owned()
    };
    let (body, bar) = if source == "-" {
        let stream = tokio_util::io::ReaderStream::new(tokio::io::stdin());
        (
            reqwest::Body::wrap_stream(stream),
            indicatif::ProgressBar::hidden(),
        )
    } else {
        let file = tokio::fs::File::open(source).await.map_err(local)?;
        let len = file.metadata().await.map_err(local)?.len();
        let bar = progress(len, cli.json);
        let counted = bar.clone();
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20)
            .inspect_ok(move |chunk| counted.inc(chunk.len() as u64));
        (reqwest::Body::wrap_stream(stream), bar)
    };
    let stored = client.put_object(bucket, &key, None, body).await;
    bar.finish_and_clear();
    let stored = stored?;
    if cli.json {
        output::json(&stored);
    } else {
        println!(
            "{source} → s3://{bucket}/{} ({})",
            stored.key,
            bytesize::ByteSize(stored.size)
        );
    }
    Ok(())
}

async fn download(
    cli: &Cli,
    client: &Client,
    bucket: &str,
    key: &str,
    target: &str,
) -> Result<(), Failure> {
    let response = client.get_object(bucket, key).await?;
    let len = response.content_length().unwrap_or(0);
    let bar = progress(len, cli.json || target == "-");
    let mut stream = response.bytes_stream();
    let failed = |e: reqwest::Error| Failure::Unreachable(format!("download interrupted: {e}"));
    if target == "-" {
        let mut out = tokio::io::stdout();
        while let Some(chunk) = stream.try_next().await.map_err(failed)? {
            out.write_all(&chunk)
                .await
                .map_err(|e| Failure::Local(format!("stdout: {e}")))?;
        }
        out.flush()
            .await
            .map_err(|e| Failure::Local(format!("stdout: {e}")))?;
        return Ok(());
    }
    let path = if target.ends_with('/') || Path::new(target).is_dir() {
        let name = key.rsplit('/').next().unwrap_or(key);
        Path::new(target).join(name)
    } else {
        Path::new(target).to_owned()
    };
    let local = |e: std::io::Error| Failure::Local(format!("{}: {e}", path.display()));
    // Written beside the target and renamed over it: an interrupted copy leaves no torn file.
    let partial = path.with_extension("nimbus-partial");
    let mut file = tokio::fs::File::create(&partial).await.map_err(local)?;
    while let Some(chunk) = stream.try_next().await.map_err(failed)? {
        bar.inc(chunk.len() as u64);
        file.write_all(&chunk).await.map_err(local)?;
    }
    file.sync_all().await.map_err(local)?;
    tokio::fs::rename(&partial, &path).await.map_err(local)?;
    bar.finish_and_clear();
    if !cli.json {
        println!("s3://{bucket}/{key} → {}", path.display());
    }
    Ok(())
}
