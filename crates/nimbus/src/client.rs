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
    let mut http = reqwest::Client::builder();
    if let Some(path) = &cli.ca_cert {
        let pem = std::fs::read(path).map_err(|e| {
            Failure::Usage(format!("read the CA certificate {}: {e}", path.display()))
        })?;
        let ca = reqwest::Certificate::from_pem(&pem).map_err(|e| {
            Failure::Usage(format!("{} is not a PEM certificate: {e}", path.display()))
        })?;
        http = http.add_root_certificate(ca);
    }
    let http = http
        .build()
        .map_err(|e| Failure::Usage(format!("the HTTP client cannot be made: {e}")))?;
    Ok(Client::with_http(url, token, http))
}
