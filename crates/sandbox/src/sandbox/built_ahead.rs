//! Building ahead of time, and handing what was built to launches: held sandboxes and
//! runtimes started ahead into them (the pools themselves are [`crate::ahead`]'s).
//!
//! A runtime is started ahead in one of two ways, whichever its launch spec allows:
//! forked by its zygote ([`LaunchSpec::zygote`]), or exec'd by the held sandbox's init
//! with [`LaunchSpec::start_ahead_env`]. Either way it ends up fully confined, blocked
//! reading its instance's configuration from a pipe, which a launch writes after it has
//! mounted the code and set the limits.

use std::fs::File;
use std::hash::Hash;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{
    config_memfd, hand_out, runtime_api, runtime_config, runtime_env, Built, Inner,
    SandboxInstance, EMPTY_LAYER, PASSED_FD,
};
use crate::ahead::{Demand, HeldKey, Pool, Pooled};
use crate::cgroups;
use crate::launcher::{
    zygote_program, InstanceProcess, LaunchError, LaunchSpec, Launched, Resources, ServedBy,
    ZygoteSpec, CONFIG_FD_VAR,
};
use crate::protocol::{KeeperRequest, RuntimeStart};
use crate::sys;

/// How a runtime is started ahead.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum StartedBy {
    /// Forked by this zygote.
    Zygote(ZygoteSpec),
    /// Exec'd with this environment (plus the config descriptor's and the Runtime API's).
    Exec(Vec<(String, String)>),
}

/// Which runtimes started ahead may serve a launch: the sandbox's shape, the program and
/// how it was started.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct StartedKey {
    held: HeldKey,
    program: PathBuf,
    args: Vec<String>,
    by: StartedBy,
}

impl StartedKey {
    /// The key of `spec`'s runtime, if it can be started ahead: forked by its zygote
    /// (when zygotes are in use), else exec'd with its start-ahead environment.
    pub(super) fn of(spec: &LaunchSpec, zygotes: bool) -> Option<StartedKey> {
        let by = match (&spec.zygote, &spec.start_ahead_env) {
            (Some(z), _) if zygotes => StartedBy::Zygote(z.clone()),
            (_, Some(env)) => StartedBy::Exec(env.clone()),
            _ => return None,
        };
        Some(StartedKey {
            held: HeldKey::of(spec),
            program: spec.program.clone(),
            args: spec.args.clone(),
            by,
        })
    }
}

/// A runtime started into a held sandbox, fully confined, blocked reading its instance's
/// configuration from `config` (written once a launch takes it, after its code is
/// mounted).
pub(crate) struct Started {
    built: Built,
    output: OwnedFd,
    config: OwnedFd,
}

impl Pooled for Started {
    fn id(&self) -> &str {
        self.built.instance.id()
    }
}

impl Started {
    /// Gives its room in the server's account back (before it is stopped elsewhere).
    pub(super) fn give_back_room(&mut self) {
        drop(self.built.reservation.take());
    }
}

/// Limits a held sandbox is built with; a launch sets its own.
const HELD_RESOURCES: Resources = Resources {
    memory_mb: 128,
    tmp_mb: 0,
    cpu_millis: 250,
    cpu_period_us: cgroups::CPU_PERIOD_US,
    cpu_burst: false,
    max_pids: 64,
    max_open_files: 0,
};

/// Limits of a runtime started ahead until a launch sets its own: a full core, so that
/// its start-up (tens of ms of CPU for Node) is over soon after it was asked for.
const STARTING_AHEAD: Resources = Resources {
    cpu_millis: 1000,
    ..HELD_RESOURCES
};

impl Inner {
    /// Tops up the held sandboxes of `key` in the background (off the request path),
    /// after `demand`: a launch of the shape, one announced, or only a use of the key.
    pub(super) fn refill_held(self: &Arc<Self>, key: HeldKey, demand: Demand) {
        let spawn = self.held.note(&key, demand);
        if spawn {
            self.spawn_refill(
                |inner| &inner.held,
                key,
                "held",
                |inner, key| inner.build_held(key),
            );
        }
    }

    /// Tops up the runtimes started ahead of `key` in the background, after `demand`.
    pub(super) fn refill_started(self: &Arc<Self>, key: StartedKey, demand: Demand) {
        if self.started.note(&key, demand) {
            self.spawn_started_refill(key);
        }
    }

    fn spawn_started_refill(self: &Arc<Self>, key: StartedKey) {
        self.spawn_refill(
            |inner| &inner.started,
            key,
            "start-ahead",
            |inner, key| inner.start_ahead(key),
        );
    }

    /// Builds items of `key` on a thread of its own for as long as `pool(self)` lacks
    /// some, each with a build permit from the server's account. The caller has counted
    /// the thread in the pool ([`Pool::note`] or [`Pool::tend`]).
    pub(super) fn spawn_refill<K, T>(
        self: &Arc<Self>,
        pool: fn(&Inner) -> &Pool<K, T>,
        key: K,
        what: &'static str,
        make: fn(&Arc<Inner>, &K) -> Result<T, LaunchError>,
    ) where
        K: Clone + Eq + Hash + Send + 'static,
        T: Pooled + Send + 'static,
    {
        let inner = self.clone();
        let worker_key = key.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("tern-{what}"))
            .spawn(move || {
                let key = worker_key;
                let items = pool(&inner);
                while items.begin_build(&key) {
                    // Requests come first: without a permit, the next tend retries.
                    let permit = match inner.capacity.get() {
                        Some(account) => match account.build_permit() {
                            Some(permit) => Some(permit),
                            None => {
                                items.build_failed(&key);
                                break;
                            }
                        },
                        None => None,
                    };
                    let made = make(&inner, &key);
                    drop(permit);
                    match made {
                        Ok(item) => {
                            if let Some(unwanted) = items.put(&key, item) {
                                drop(unwanted);
                                break;
                            }
                        }
                        Err(e) => {
                            items.build_failed(&key);
                            tracing::debug!(error = %e, pool = what, "could not refill a pool");
                            break;
                        }
                    }
                }
                items.worker_done(&key);
            });
        if spawned.is_err() {
            pool(self).worker_done(&key);
        }
    }

    /// Periodic upkeep of every pool (see [`crate::launcher::Launcher::tend`]).
    pub(super) fn tend_pools(self: &Arc<Self>) {
        let held = self.held.tend();
        crate::ahead::discard(held.stale);
        for key in held.short {
            self.spawn_refill(
                |inner| &inner.held,
                key,
                "held",
                |inner, key| inner.build_held(key),
            );
        }
        let started = self.started.tend();
        crate::ahead::discard(started.stale);
        for key in started.short {
            self.spawn_started_refill(key);
        }
        let forks = self.templates.forks.tend();
        crate::ahead::discard(forks.stale);
        for key in forks.short {
            self.spawn_template_fork_refill(key);
        }
        // A runtime started ahead counts what it uses (a Node runtime tens of MB, a
        // zygote's fork a few), measured once it has settled.
        self.started.for_each_ready(|s| {
            let used = s.built.instance.cgroup.memory_current();
            if let (Some(bytes), Some(room)) = (used, s.built.reservation.as_mut()) {
                room.resize((bytes >> 20).max(1));
            }
        });
    }

    /// Starts a runtime of `key` into a sandbox built for it, to wait there for an
    /// instance. (Held sandboxes stay for the launches that find no runtime started
    /// ahead: a burst beyond this pool then forks or execs into one of them rather
    /// than building a sandbox on the request path.)
    fn start_ahead(&self, key: &StartedKey) -> Result<Started, LaunchError> {
        let zygote = match &key.by {
            StartedBy::Zygote(z) => {
                let Some(program_as) = zygote_program(&key.args) else {
                    return Err(LaunchError::Prepare(
                        "a zygote start takes the zygote's interpreter flags and the program"
                            .into(),
                    ));
                };
                Some(
                    self.zygotes
                        .get(&key.program, z, program_as, &self.seccomp)
                        .map_err(|e| LaunchError::Prepare(format!("start the zygote: {e}")))?,
                )
            }
            StartedBy::Exec(_) => None,
        };
        let Built {
            mut instance,
            listener,
            request,
            reservation,
        } = self.build_held(&key.held)?;
        let started = (|| {
            instance
                .set_resources(&Resources {
                    tmp_mb: key.held.tmp_mb,
                    max_open_files: key.held.max_open_files,
                    ..STARTING_AHEAD
                })
                .map_err(LaunchError::Prepare)?;
            let (output, output_w) = sys::pipe()?;
            let (config, config_w) = sys::pipe()?;
            match (&key.by, zygote) {
                (StartedBy::Zygote(_), Some(zygote)) => {
                    instance.forked =
                        Some(self.fork_runtime(&zygote, &request, config, &instance, output_w)?);
                }
                (StartedBy::Exec(env), _) => {
                    let mut env = env.clone();
                    env.retain(|(k, _)| k != "AWS_LAMBDA_RUNTIME_API" && k != CONFIG_FD_VAR);
                    env.push(("AWS_LAMBDA_RUNTIME_API".into(), runtime_api()));
                    env.push((CONFIG_FD_VAR.into(), PASSED_FD.to_string()));
                    instance
                        .start_runtime(
                            RuntimeStart {
                                program: key.program.clone(),
                                args: key.args.clone(),
                                env,
                            },
                            output_w,
                            Some(config),
                        )
                        .map_err(LaunchError::Prepare)?;
                }
                (StartedBy::Zygote(_), None) => unreachable!("a zygote start has its zygote"),
            }
            Ok((output, config_w))
        })();
        match started {
            Ok((output, config)) => Ok(Started {
                built: Built {
                    instance,
                    listener,
                    request,
                    reservation,
                },
                output,
                config,
            }),
            Err(e) => {
                instance.abandon();
                Err(e)
            }
        }
    }

    /// Gives a runtime started ahead its instance: limits, its environment, the code,
    /// then the end of its config pipe (the runtime sets up its environment while the
    /// code is mounted, and imports nothing before that end).
    pub(super) fn launch_started(
        &self,
        spec: &LaunchSpec,
        started: Started,
    ) -> Result<Launched, LaunchError> {
        let Started {
            built: Built {
                instance, listener, ..
            },
            output,
            config,
        } = started;
        let started = std::time::Instant::now();
        let mut pipe = File::from(config);
        let handed = instance
            .set_resources(&spec.resources)
            .map_err(LaunchError::Prepare)
            .and_then(|()| {
                std::io::Write::write_all(&mut pipe, &runtime_config(&runtime_env(spec))?)
                    .map_err(LaunchError::from)
            })
            .and_then(|()| {
                instance
                    .attach_code(&spec.code_dir, &spec.layer_dirs)
                    .map_err(LaunchError::Prepare)
            });
        drop(pipe);
        tracing::trace!(
            instance = %spec.instance_id,
            setup_us = started.elapsed().as_micros() as u64,
            "runtime started ahead handed its instance"
        );
        hand_out(
            spec,
            instance,
            listener,
            handed.map(|_| output),
            ServedBy::StartedAhead,
        )
    }

    pub(super) fn build_held(&self, key: &HeldKey) -> Result<Built, LaunchError> {
        let n = self.held_seq.fetch_add(1, Ordering::Relaxed);
        let spec = LaunchSpec {
            // Random as well: instance ids show up as log stream names, which must not
            // repeat across server restarts.
            instance_id: format!("h{n}-{:08x}", sys::random_u32()),
            program: PathBuf::new(),
            args: Vec::new(),
            env: Vec::new(),
            code_dir: self.config.state_dir.join(EMPTY_LAYER),
            bootstrap_dir: key.bootstrap_dir.clone(),
            layer_dirs: Vec::new(),
            runtime_dir: key.runtime_dir.clone(),
            extra_ro_paths: key.extra_ro_paths.clone(),
            resources: Resources {
                tmp_mb: key.tmp_mb,
                max_open_files: key.max_open_files,
                ..HELD_RESOURCES
            },
            zygote: None,
            template: None,
            start_ahead_env: None,
            network: key.network.clone(),
            owner: String::new(),
        };
        // Built only if the server's account has room for it (and counted there).
        let reservation = match self.capacity.get() {
            Some(account) => Some(account.reserve_built_ahead().ok_or_else(|| {
                LaunchError::Prepare("no room in the server's capacity account".into())
            })?),
            None => None,
        };
        let mut built = self.build(&spec, None)?;
        built.reservation = reservation;
        Ok(built)
    }

    /// Starts `spec`'s runtime in a held sandbox: its code and limits, then the runtime
    /// exec'd by the init or forked by `zygote`.
    pub(super) fn launch_in_held(
        &self,
        spec: &LaunchSpec,
        zygote: Option<&ZygoteSpec>,
        held: Built,
    ) -> Result<Launched, LaunchError> {
        // The launch's instance counts in the account itself: the held room goes back.
        let Built {
            mut instance,
            listener,
            request,
            reservation: _,
        } = held;
        let started = self.start_in(spec, zygote, &mut instance, &request);
        hand_out(spec, instance, listener, started, ServedBy::HeldSandbox)
    }

    /// Returns the read end of the runtime's output.
    fn start_in(
        &self,
        spec: &LaunchSpec,
        zygote: Option<&ZygoteSpec>,
        instance: &mut SandboxInstance,
        request: &KeeperRequest,
    ) -> Result<OwnedFd, LaunchError> {
        instance
            .set_resources(&spec.resources)
            .map_err(LaunchError::Prepare)?;
        instance
            .attach_code(&spec.code_dir, &spec.layer_dirs)
            .map_err(LaunchError::Prepare)?;
        let (output, output_w) = sys::pipe()?;
        let env = runtime_env(spec);
        match zygote {
            Some(z) => {
                let zygote = self.zygote_for(spec, z)?;
                let config = config_memfd(&env)?;
                instance.forked =
                    Some(self.fork_runtime(&zygote, request, config, instance, output_w)?);
            }
            None => instance
                .start_runtime(
                    RuntimeStart {
                        program: spec.program.clone(),
                        args: spec.args.clone(),
                        env,
                    },
                    output_w,
                    None,
                )
                .map_err(LaunchError::Prepare)?,
        }
        Ok(output)
    }
}
