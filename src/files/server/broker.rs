//! The broker a file server can run in its own process, so that clients
//! reach the files in one hop. The file server's own connections use a
//! private unix socket in a directory only this user can enter.

use crate::files::{Error, Result};
use crate::server::{Config, Server, ShutdownHandle};
use crate::transport::Address;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::thread::JoinHandle;

/// A broker running on a thread of this process.
pub struct Embedded {
    stop: ShutdownHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    /// The listeners asked for, as bound.
    public: Vec<String>,
    /// The private socket's directory, removed at stop.
    private_dir: PathBuf,
}

impl Embedded {
    /// Binds `listen` plus a private socket and starts serving; returns
    /// the broker and the private socket's address.
    pub fn start(listen: &[Address]) -> Result<(Embedded, String)> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        if listen.is_empty() {
            return Err(Error::InvalidInput(
                "give the broker at least one address to listen on".into(),
            ));
        }
        let dir = std::env::temp_dir().join(format!(
            "dime-files-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(dir.display(), &e))?;
        let private = Address::Unix(dir.join("broker.sock"));
        let mut all = listen.to_vec();
        all.push(private);
        let mut server = match Server::bind(Config {
            listen: all,
            ..Config::default()
        }) {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(Error::Io(format!("cannot start the broker: {e}")));
            }
        };
        let mut addrs = server.local_addrs();
        let private = addrs.pop().unwrap_or_default();
        let stop = server.shutdown_handle();
        let thread = std::thread::Builder::new()
            .name("dime-broker".into())
            .spawn(move || server.run())
            .map_err(|e| Error::Io(format!("cannot start the broker thread: {e}")))?;
        Ok((
            Embedded {
                stop,
                thread: Some(thread),
                public: addrs,
                private_dir: dir,
            },
            private,
        ))
    }

    /// The public listeners, as bound.
    pub fn addresses(&self) -> Vec<String> {
        self.public.clone()
    }

    /// Stops the broker and removes the private socket.
    pub fn stop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            if let Ok(Err(e)) = t.join() {
                log::warn!("the embedded broker failed: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.private_dir);
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.stop();
    }
}
