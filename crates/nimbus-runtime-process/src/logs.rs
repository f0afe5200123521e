//! An instance's log stream: one pipe carrying the process's stdout and stderr, read by one
//! task into a bounded buffer that each invocation takes whole.
//!
//! [`LogStream::take`] first drains whatever the pipe already holds (the runtime wrote it before
//! posting its answer, so it is there), so an invocation's logs are complete when it ends.

use std::os::fd::OwnedFd;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

/// Most guest output kept per invocation, as for Wasm functions.
pub const LOG_LIMIT: usize = 64 * 1024;

pub(crate) struct LogStream {
    requests: mpsc::UnboundedSender<oneshot::Sender<String>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for LogStream {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl LogStream {
    pub fn start(output: OwnedFd) -> std::io::Result<LogStream> {
        let pipe = pipe::Receiver::from_owned_fd(output)?;
        let (requests, receiver) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read(pipe, receiver));
        Ok(LogStream { requests, reader })
    }

    /// Everything written since the last call (at most [`LOG_LIMIT`] bytes, truncation said).
    pub async fn take(&self) -> String {
        let (sender, receiver) = oneshot::channel();
        if self.requests.send(sender).is_err() {
            return String::new();
        }
        receiver.await.unwrap_or_default()
    }
}

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Buffer {
    fn push(&mut self, data: &[u8]) {
        let room = LOG_LIMIT.saturating_sub(self.bytes.len());
        let kept = data.len().min(room);
        self.bytes
            .extend_from_slice(data.get(..kept).unwrap_or(data));
        self.dropped += data.len() - kept;
    }

    fn take(&mut self) -> String {
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if self.dropped > 0 {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!(
                "[nimbus: {} more bytes of output were dropped; the limit is {LOG_LIMIT} bytes per invocation]\n",
                self.dropped
            ));
        }
        self.bytes.clear();
        self.dropped = 0;
        text
    }
}

async fn read(
    mut pipe: pipe::Receiver,
    mut requests: mpsc::UnboundedReceiver<oneshot::Sender<String>>,
) {
    use tokio::io::AsyncReadExt;
    let mut buffer = Buffer::default();
    let mut chunk = vec![0u8; 16 * 1024];
    let mut open = true;
    loop {
        tokio::select! {
            read = pipe.read(&mut chunk), if open => match read {
                Ok(0) | Err(_) => open = false,
                Ok(n) => buffer.push(chunk.get(..n).unwrap_or(&chunk)),
            },
            request = requests.recv() => {
                let Some(reply) = request else { return };
                while open {
                    match pipe.try_read(&mut chunk) {
                        Ok(0) => open = false,
                        Ok(n) => buffer.push(chunk.get(..n).unwrap_or(&chunk)),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(_) => open = false,
                    }
                }
                let _ = reply.send(buffer.take());
            }
        }
    }
}
