//! The broker a file server can run in its own process, so that clients
//! reach the files in one hop. The file server's functions are then
//! in-process providers of that broker (`Server::local_provider`): calls
//! reach its workers, and pieces reach the clients' sockets, without a
//! socket in between.

use crate::files::{Error, Result};
use crate::server::local::LocalProvider;
use crate::server::{Config, Server, ShutdownHandle};
use crate::transport::Address;
use std::thread::JoinHandle;

/// A broker running on a thread of this process.
pub struct Embedded {
    stop: ShutdownHandle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
    /// The listeners, as bound.
    addresses: Vec<String>,
}

impl Embedded {
    /// Binds `listen`, provides `functions` in process (`capacity` calls
    /// of each at once) and starts serving.
    pub fn start(
        listen: &[Address],
        functions: &[&str],
        capacity: u32,
    ) -> Result<(Embedded, LocalProvider)> {
        if listen.is_empty() {
            return Err(Error::InvalidInput(
                "give the broker at least one address to listen on".into(),
            ));
        }
        let mut server = Server::bind(Config {
            listen: listen.to_vec(),
            // Bulk transfers keep the loop busy anyway; spinning between
            // events would only take a core from the workers.
            busy_poll: std::time::Duration::ZERO,
            ..Config::default()
        })
        .map_err(|e| Error::Io(format!("cannot start the broker: {e}")))?;
        let provider = server.local_provider(functions, capacity);
        let addresses = server.local_addrs();
        let stop = server.shutdown_handle();
        let thread = std::thread::Builder::new()
            .name("dime-broker".into())
            .spawn(move || server.run())
            .map_err(|e| Error::Io(format!("cannot start the broker thread: {e}")))?;
        Ok((
            Embedded {
                stop,
                thread: Some(thread),
                addresses,
            },
            provider,
        ))
    }

    /// The listeners, as bound.
    pub fn addresses(&self) -> Vec<String> {
        self.addresses.clone()
    }

    /// Stops the broker (its unix socket files are removed).
    pub fn stop(&mut self) {
        self.stop.shutdown();
        if let Some(t) = self.thread.take() {
            if let Ok(Err(e)) = t.join() {
                log::warn!("the embedded broker failed: {e}");
            }
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.stop();
    }
}
