//! End-user auth's commands: `users ls`, `users create`, `users ban`, `users unban`,
//! `users rm`, `users rotate-keys`.

use crate::commands::Failure;
use crate::{Cli, UsersCommand, client, output};
use nimbus_api::{CreateUserRequest, UserEntry};
use std::time::{Duration, UNIX_EPOCH};

fn when(ms: u64) -> String {
    if ms == u64::MAX {
        return "indefinitely".into();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn print_user(cli: &Cli, user: &UserEntry, what: &str) {
    if cli.json {
        output::json(user);
    } else {
        println!("{what} {} ({})", user.email, user.id);
    }
}

pub(crate) async fn run(cli: &Cli, command: &UsersCommand) -> Result<(), Failure> {
    let client = client::connect(cli)?;
    match command {
        UsersCommand::Ls { app, after, limit } => {
            let mut users = Vec::new();
            let mut after = after.clone();
            while users.len() < *limit {
                let page = client
                    .users(app, after.as_deref(), (*limit - users.len()).min(1000))
                    .await?;
                users.extend(page.users);
                after = page.next;
                if after.is_none() {
                    break;
                }
            }
            if cli.json {
                output::json(&serde_json::json!({"users": users, "next": after}));
                return Ok(());
            }
            let rows = users
                .iter()
                .map(|u| {
                    vec![
                        u.id.clone(),
                        u.email.clone(),
                        if u.confirmed { "yes" } else { "no" }.into(),
                        u.last_sign_in_ms.map(when).unwrap_or_else(|| "-".into()),
                        u.banned_until_ms.map(when).unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            output::table(
                &["ID", "EMAIL", "CONFIRMED", "LAST SIGN-IN", "BANNED UNTIL"],
                rows,
            );
            if let Some(next) = after {
                eprintln!("(more users; continue with --after {next})");
            }
        }
        UsersCommand::Create {
            email,
            app,
            password_stdin,
            password_hash,
            confirmed,
        } => {
            let password = if *password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|e| Failure::Local(format!("reading the password: {e}")))?;
                Some(line.trim_end_matches(['\n', '\r']).to_owned())
            } else {
                None
            };
            let user = client
                .create_user(
                    app,
                    &CreateUserRequest {
                        email: email.clone(),
                        password,
                        password_hash: password_hash.clone(),
                        confirmed: *confirmed,
                        user_metadata: Default::default(),
                    },
                )
                .await?;
            print_user(cli, &user, "created");
        }
        UsersCommand::Ban { id, app, duration } => {
            let for_ms = duration
                .as_deref()
                .map(|d| {
                    humantime::parse_duration(d)
                        .map(|d| d.as_millis() as u64)
                        .map_err(|_| {
                            Failure::Usage(format!(
                                "--for expects a duration like \"1h\" or \"7d\", got {d:?}"
                            ))
                        })
                })
                .transpose()?;
            let user = client.ban_user(app, id, for_ms).await?;
            if cli.json {
                output::json(&user);
            } else {
                let until = user.banned_until_ms.map(when).unwrap_or_default();
                println!(
                    "banned {} ({}) until {until}; their sessions ended",
                    user.email, user.id
                );
            }
        }
        UsersCommand::Unban { id, app } => {
            let user = client.unban_user(app, id).await?;
            print_user(cli, &user, "unbanned");
        }
        UsersCommand::Rm { id, app } => {
            let user = client.remove_user(app, id).await?;
            print_user(cli, &user, "removed");
        }
        UsersCommand::RotateKeys { app } => {
            let rotated = client.rotate_auth_keys(app).await?;
            if cli.json {
                output::json(&rotated);
            } else {
                println!(
                    "signing with key {} now; tokens signed before stay valid until they expire",
                    rotated.kid
                );
            }
        }
    }
    Ok(())
}
