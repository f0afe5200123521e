//! The table service's commands: `tables` and `table scan`.

use crate::commands::Failure;
use crate::{Cli, TableCommand, client, output};

pub(crate) async fn list(cli: &Cli) -> Result<(), Failure> {
    let tables = client::connect(cli)?.tables().await?;
    if cli.json {
        output::json(&tables);
        return Ok(());
    }
    let rows = tables
        .into_iter()
        .map(|t| {
            vec![
                t.app.unwrap_or_else(|| "(operator)".into()),
                t.name,
                match t.sort_key {
                    Some(sort) => format!("{} + {sort}", t.partition_key),
                    None => t.partition_key,
                },
                t.items.to_string(),
                bytesize::ByteSize(t.size_bytes).to_string(),
                t.stream.unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    output::table(&["APP", "TABLE", "KEY", "ITEMS", "SIZE", "STREAM"], rows);
    Ok(())
}

pub(crate) async fn table(cli: &Cli, command: &TableCommand) -> Result<(), Failure> {
    let client = client::connect(cli)?;
    match command {
        TableCommand::Scan { table, app, limit } => {
            let mut items = Vec::new();
            let mut after: Option<String> = None;
            while items.len() < *limit {
                let page = client
                    .table_items(
                        app.as_deref(),
                        table,
                        after.as_deref(),
                        (*limit - items.len()).min(1000),
                    )
                    .await?;
                items.extend(page.items);
                after = page.next;
                if after.is_none() {
                    break;
                }
            }
            if cli.json {
                output::json(&items);
            } else {
                for item in &items {
                    println!("{item}");
                }
                if after.is_some() {
                    eprintln!("(more items; raise --limit to see them)");
                }
            }
        }
    }
    Ok(())
}
