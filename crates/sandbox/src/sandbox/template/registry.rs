//! The launcher's templates: at most one per function, by revision, with the instances
//! forked ahead from each (in the launcher's one kind of pool, [`Pool`]), and the rules
//! for retiring them: another revision, a failed fork, idleness, or room needed.

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::Template;
use crate::ahead::{Depth, Pool, Pooled};
use crate::launcher::{Reservation, TemplateSpec};
use crate::sandbox::SandboxInstance;

/// Templates that have instances forked ahead at once (the most recently used): each
/// such instance counts as a sandbox built ahead (a few MB and a slot).
const MAX_TEMPLATES_FORKED_AHEAD: usize = 64;
/// A template not forked from for this long is retired at the next launch that looks.
const IDLE: Duration = Duration::from_secs(600);

enum Slot {
    Building(String),
    Ready(Arc<Template>),
    /// The init failed (or could not be counted); not tried again for this revision.
    Failed(String),
}

/// What [`Templates::lookup`] found for a launch.
pub(crate) enum Lookup {
    Ready(Arc<Template>),
    /// None for this revision: the caller builds one.
    Build,
    /// One is being built, or this revision's failed.
    None,
}

/// Template builds waiting for their turn at most (see [`Templates::queue_for_build`]).
const MAX_QUEUED_BUILDS: usize = 32;

/// The launcher's templates, one per function at most.
pub(crate) struct Templates {
    slots: Mutex<HashMap<String, Slot>>,
    /// Builds run one at a time: a template's init gets a full core for up to its
    /// timeout, and requests must not wait behind many of them.
    build_turn: Mutex<()>,
    queued_builds: std::sync::atomic::AtomicUsize,
    /// Every template still alive, retired ones included (shutdown stops them).
    alive: Mutex<Vec<Weak<Template>>>,
    /// Instances forked ahead of a launch, per template: in their cgroups already,
    /// waiting for their environment. A launch claims one as it would a held sandbox.
    pub(crate) forks: Pool<TemplateSpec, TemplateFork>,
}

/// An instance forked from its template ahead of a launch.
pub(crate) struct TemplateFork {
    pub(super) instance: SandboxInstance,
    pub(super) output: OwnedFd,
    pub(super) listener: TcpListener,
    /// Write end of the pipe its runtime reads its environment from.
    pub(super) config: OwnedFd,
    /// Its room in the server's capacity account until a launch takes it.
    pub(super) room: Option<Reservation>,
}

impl TemplateFork {
    /// Gives its room in the capacity account back now (it is being stopped).
    pub(crate) fn give_back_room(&mut self) {
        self.room.take();
    }
}

impl Pooled for TemplateFork {
    fn id(&self) -> &str {
        self.instance.id()
    }
}

impl Templates {
    /// Keeps instances forked ahead per template as deep as `depth` allows.
    pub(crate) fn new(depth: Depth) -> Templates {
        Templates {
            slots: Mutex::new(HashMap::new()),
            build_turn: Mutex::new(()),
            queued_builds: std::sync::atomic::AtomicUsize::new(0),
            alive: Mutex::new(Vec::new()),
            forks: Pool::new(depth, MAX_TEMPLATES_FORKED_AHEAD),
        }
    }

    /// Waits for this build's turn (builds run one at a time); `None` if too many wait.
    pub(super) fn queue_for_build(&self) -> Option<std::sync::MutexGuard<'_, ()>> {
        use std::sync::atomic::Ordering;
        if self.queued_builds.fetch_add(1, Ordering::AcqRel) >= MAX_QUEUED_BUILDS {
            self.queued_builds.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let turn = self.build_turn.lock().unwrap_or_else(|e| e.into_inner());
        self.queued_builds.fetch_sub(1, Ordering::AcqRel);
        Some(turn)
    }

    /// The ready template for `spec`, if any.
    pub(super) fn get(&self, spec: &TemplateSpec) -> Option<Arc<Template>> {
        match self.slots().get(&spec.function) {
            Some(Slot::Ready(t)) if t.spec == *spec => Some(t.clone()),
            _ => None,
        }
    }

    /// Retires `template` after its last fork (see `MAX_FORKS`), if it still serves: the
    /// function's next cold start builds a fresh one.
    pub(super) fn used_up(&self, template: &Arc<Template>) {
        let mut slots = self.slots();
        if matches!(slots.get(&template.spec.function), Some(Slot::Ready(t)) if Arc::ptr_eq(t, template))
        {
            Self::remove(&mut slots, &self.forks, &template.spec.function);
        }
    }

    /// Removes a function's slot; what was forked ahead from its template goes too, and
    /// so do the template's own processes (its forks, in its pid namespace, stay).
    fn remove(
        slots: &mut HashMap<String, Slot>,
        forks: &Pool<TemplateSpec, TemplateFork>,
        function: &str,
    ) {
        if let Some(Slot::Ready(t)) = slots.remove(function) {
            forks.forget(&t.spec);
            t.stop_processes();
        }
    }
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The template for `spec`. A template of another revision of the function is
    /// retired; with none for this one, the slot is marked as building and `Build`
    /// returned, so exactly one caller builds it.
    pub(crate) fn lookup(&self, spec: &TemplateSpec) -> Lookup {
        let mut slots = self.slots();
        let idle: Vec<String> = slots
            .iter()
            .filter(|(_, slot)| matches!(slot, Slot::Ready(t) if t.idle_for() >= IDLE))
            .map(|(function, _)| function.clone())
            .collect();
        for function in idle {
            Self::remove(&mut slots, &self.forks, &function);
        }
        match slots.get(&spec.function) {
            Some(Slot::Ready(t)) if t.spec == *spec => {
                *t.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                return Lookup::Ready(t.clone());
            }
            Some(Slot::Building(rev) | Slot::Failed(rev)) if *rev == spec.revision => {
                return Lookup::None;
            }
            _ => {}
        }
        Self::remove(&mut slots, &self.forks, &spec.function);
        slots.insert(spec.function.clone(), Slot::Building(spec.revision.clone()));
        Lookup::Build
    }

    /// Whether a template for `spec` is ready to fork from; counts as a use of it (an
    /// instance forked ahead is about to be taken).
    pub(crate) fn is_ready(&self, spec: &TemplateSpec) -> bool {
        match self.slots().get(&spec.function) {
            Some(Slot::Ready(t)) if t.spec == *spec => {
                *t.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// Records how a build that [`Templates::lookup`] asked for ended (unless the
    /// function moved on to another revision meanwhile).
    pub(super) fn built(&self, spec: &TemplateSpec, outcome: Result<Arc<Template>, ()>) {
        let mut slots = self.slots();
        let current = matches!(
            slots.get(&spec.function),
            Some(Slot::Building(rev)) if *rev == spec.revision
        );
        if !current {
            return;
        }
        let slot = match outcome {
            Ok(template) => {
                self.alive
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Arc::downgrade(&template));
                Slot::Ready(template)
            }
            Err(()) => Slot::Failed(spec.revision.clone()),
        };
        slots.insert(spec.function.clone(), slot);
    }

    /// Forgets a build that could not start (no room): the next launch tries again.
    pub(super) fn abandoned(&self, spec: &TemplateSpec) {
        let mut slots = self.slots();
        if matches!(slots.get(&spec.function), Some(Slot::Building(rev)) if *rev == spec.revision) {
            slots.remove(&spec.function);
        }
    }

    /// Stops forking from `template`, which failed a fork: its revision starts its
    /// instances as usual from now on (a template that misbehaves once is not trusted,
    /// nor rebuilt over and over at the cost of its init); the next update tries again.
    pub(super) fn failed(&self, template: &Arc<Template>) {
        let mut slots = self.slots();
        if matches!(slots.get(&template.spec.function), Some(Slot::Ready(t)) if Arc::ptr_eq(t, template))
        {
            Self::remove(&mut slots, &self.forks, &template.spec.function);
            slots.insert(
                template.spec.function.clone(),
                Slot::Failed(template.spec.revision.clone()),
            );
        }
    }

    /// Retires the template of `function`.
    pub(crate) fn retire(&self, function: &str) {
        Self::remove(&mut self.slots(), &self.forks, function);
    }

    /// Stops the least recently used template that nothing was forked from that still
    /// runs, giving its room back now; false if there is none. Its function's next cold
    /// start builds it again, if there is room then.
    pub(crate) fn drop_unused(&self) -> bool {
        let unused = {
            let mut slots = self.slots();
            let oldest = slots
                .iter()
                .filter_map(|(function, slot)| match slot {
                    Slot::Ready(t) if Arc::strong_count(t) == 1 => Some((function, t.idle_for())),
                    _ => None,
                })
                .max_by_key(|(_, idle)| *idle)
                .map(|(function, _)| function.clone());
            let Some(function) = oldest else {
                return false;
            };
            match slots.remove(&function) {
                Some(Slot::Ready(t)) => t,
                _ => return false,
            }
        };
        self.forks.forget(&unused.spec);
        drop(unused.room.lock().unwrap_or_else(|e| e.into_inner()).take());
        tracing::info!(function = %unused.spec.function, "template stopped to make room");
        crate::ahead::discard(vec![unused]);
        true
    }

    /// Templates ready to fork from.
    pub(crate) fn ready(&self) -> usize {
        self.slots()
            .values()
            .filter(|s| matches!(s, Slot::Ready(_)))
            .count()
    }

    /// Stops every template (call after the instances were cleaned up).
    pub(crate) fn shutdown(&self) {
        self.forks.clear();
        self.slots().clear();
        let alive = std::mem::take(&mut *self.alive.lock().unwrap_or_else(|e| e.into_inner()));
        for template in alive.iter().filter_map(Weak::upgrade) {
            if let Some(instance) = &template.instance {
                instance.kill_and_cleanup();
            }
        }
    }
}
