//! A plain `wasi:cli` command: a valid component that does not export `wasi:http/incoming-handler`.
//! nimbus must refuse to deploy it with a clear message.

fn main() {
    println!("I am a command, not an HTTP handler");
}
