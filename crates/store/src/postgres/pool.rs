//! A fixed number of PostgreSQL connections shared by the store's callers. A
//! connection found closed (the server restarted, the network dropped it) is
//! replaced on its next checkout, so the store recovers without a restart.

use std::ops::{Deref, DerefMut};
use std::sync::{mpsc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::{Client, Config, NoTls};

use crate::store::StoreError;

pub struct Pool {
    config: Config,
    /// Slots free to check out; `None` is a slot whose connection is yet to be made
    /// (or remade).
    idle: Mutex<Vec<Option<Client>>>,
    returned: Condvar,
    wait: Duration,
}

impl Pool {
    /// A pool of `size` slots, `first` filling one of them (the others connect on
    /// first use). A checkout waits at most `wait` for a free slot.
    pub fn new(config: Config, first: Client, size: usize, wait: Duration) -> Pool {
        let mut idle: Vec<Option<Client>> = (1..size.max(1)).map(|_| None).collect();
        idle.push(Some(first));
        Pool {
            config,
            idle: Mutex::new(idle),
            returned: Condvar::new(),
            wait,
        }
    }

    /// Opens a connection outside the pool, set up as the pool's are.
    pub fn open(config: &Config) -> Result<Client, StoreError> {
        let mut client = config.connect(NoTls)?;
        // The server's default may be off; an acknowledged event must survive a crash
        // of the database server.
        client.batch_execute("SET synchronous_commit = on")?;
        Ok(client)
    }

    /// A connection for the caller's exclusive use until the guard drops.
    pub fn get(&self) -> Result<PooledClient<'_>, StoreError> {
        let deadline = Instant::now() + self.wait;
        let mut idle = self.lock();
        let slot = loop {
            if let Some(slot) = idle.pop() {
                break slot;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Database(
                    format!("no PostgreSQL connection came free within {:?}", self.wait).into(),
                ));
            }
            idle = self
                .returned
                .wait_timeout(idle, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        drop(idle);
        let client = match slot {
            Some(client) if !client.is_closed() => client,
            _ => match Self::open(&self.config) {
                Ok(client) => client,
                Err(e) => {
                    self.put_back(None);
                    return Err(e);
                }
            },
        };
        Ok(PooledClient {
            pool: self,
            client: Some(client),
        })
    }

    fn put_back(&self, slot: Option<Client>) {
        self.lock().push(slot);
        self.returned.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Option<Client>>> {
        // The vector stays consistent across a panic elsewhere; keep going.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let clients: Vec<Client> = std::mem::take(&mut *self.lock())
            .into_iter()
            .flatten()
            .collect();
        if clients.is_empty() {
            return;
        }
        // Closing a client blocks on its own runtime, which panics on a thread that
        // drives an async runtime, where a server drops its store's last handle.
        let (tx, rx) = mpsc::channel::<Vec<Client>>();
        match std::thread::Builder::new()
            .name("tern-pg-close".into())
            .spawn(move || drop(rx.recv()))
        {
            Ok(closer) => {
                let _ = tx.send(clients);
                let _ = closer.join();
            }
            // No thread to close them on: the sockets close when the process exits.
            Err(_) => std::mem::forget(clients),
        }
    }
}

/// A checked-out connection; goes back to the pool on drop (as an empty slot if it
/// closed while in use).
pub struct PooledClient<'a> {
    pool: &'a Pool,
    client: Option<Client>,
}

impl Deref for PooledClient<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client
            .as_ref()
            .expect("a pooled client is held until drop")
    }
}

impl DerefMut for PooledClient<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client
            .as_mut()
            .expect("a pooled client is held until drop")
    }
}

impl Drop for PooledClient<'_> {
    fn drop(&mut self) {
        let slot = self.client.take().filter(|c| !c.is_closed());
        self.pool.put_back(slot);
    }
}
