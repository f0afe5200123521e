//! Finding and connecting to a server: admin URL and token from flags, the environment, or
//! the files a server publishes in its data directory.

use crate::Cli;
use crate::commands::Failure;
use nimbus_api::Client;
use std::path::PathBuf;

/// The data directory a command refers to.
pub(crate) fn data_dir(cli: &Cli) -> PathBuf {
    if let Some(dir) = &cli.data_dir {
        return dir.clone();
    }
    let local = PathBuf::from(".nimbus");
    if local.join(nimbus_server::ADMIN_URL_FILE).exists() {
        return local;
    }
    default_data_dir()
}

pub(crate) fn default_data_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/nimbus"),
        None => PathBuf::from(".nimbus"),
    }
}

pub(crate) fn connect(cli: &Cli) -> Result<Client, Failure> {
    let dir = data_dir(cli);
    let url = match &cli.admin_url {
        Some(url) => url.clone(),
        None => std::fs::read_to_string(dir.join(nimbus_server::ADMIN_URL_FILE))
            .map(|s| s.trim().to_owned())
            .map_err(|_| Failure::Unreachable(format!(
                "no running server found: {} has no {} (start one with `nimbus serve` or `nimbus up`, or pass --data-dir / --admin-url)",
                dir.display(),
                nimbus_server::ADMIN_URL_FILE
            )))?,
    };
    let token = match &cli.token {
        Some(token) => token.clone(),
        None => std::fs::read_to_string(dir.join(nimbus_server::TOKEN_FILE))
            .map(|s| s.trim().to_owned())
            .map_err(|_| {
                Failure::Usage(format!(
                    "no admin token: {} has no {} (pass --token or NIMBUS_TOKEN)",
                    dir.display(),
                    nimbus_server::TOKEN_FILE
                ))
            })?,
    };
    Ok(Client::new(url, token))
}
