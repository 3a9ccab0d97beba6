//! [`Engine`]: a loaded model (or a connection to servers) solving problems with any strategy,
//! many at once.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Error;
use crate::lm::{
    ContextLoad, ContextOptions, LlamaLm, Lm, Model, ModelOptions, SharedLlama, Usage,
};
#[cfg(feature = "remote")]
use crate::lm::{RemoteLm, RemoteOptions, SharedRemote};
use crate::strategy::{Event, Flow, Observer, Outcome, Problem, StrategyConfig};

/// Cancels one solve from any thread: pass it to [`Engine::solve_with_token`], call
/// [`CancelToken::cancel`] when the result is no longer wanted. Clones share the same flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<std::sync::atomic::AtomicBool>);

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the solve (or solves) using this token; the solve stops within one forward pass.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A model and its inference context, ready to solve problems.
///
/// Thread rules: an `Engine` is `Send + Sync`. On the llama.cpp backend, solves from several
/// threads run *concurrently* in one context: every step of the decode loop puts the next tokens
/// of all of them into one forward pass (continuous batching; see [`SharedLlama`]). On the remote
/// backend they run concurrently over one connection, whose cap on requests in flight and choice
/// of server see the requests of every solve (see [`SharedRemote`]). With
/// [`ContextOptions::deterministic`], and on other [`Lm`]s, solves are served one at a time in
/// the order a lock is granted. [`Engine::cancel`] may be called from any thread at any time,
/// also from an event callback; [`CancelToken`] cancels one solve only. An event callback must not
/// call [`Engine::solve`] or [`Engine::solve_with`] on the engine whose solve is calling it (a
/// serialised engine would wait forever): a solve refuses it at once with [`Error::Reentrant`].
/// On a serialised engine [`Engine::usage`] and [`Engine::with_lm`] called from such a callback
/// panic for the same reason.
pub struct Engine {
    lm: SharedLm,
    /// Held for a whole solve when solves run one at a time.
    serial: Option<Mutex<()>>,
    /// Bumped by [`Engine::cancel`]; a solve that saw another value when it began is cancelled.
    cancel_epoch: Arc<AtomicU64>,
}

/// The model, as the solves of one engine share it.
enum SharedLm {
    /// The llama.cpp context, shared by concurrent solves.
    Llama(Arc<SharedLlama>),
    /// One connection to remote servers, shared by concurrent solves.
    #[cfg(feature = "remote")]
    Remote(Arc<SharedRemote>),
    /// Any other [`Lm`], one solve at a time.
    Locked(Mutex<Box<dyn Lm + Send>>),
}

impl SharedLm {
    /// Runs `f` with a model for one solve: a fresh handle on a shared context or connection
    /// (its nodes released when it is dropped), or the locked model itself.
    fn with<T>(&self, f: impl FnOnce(&mut dyn Lm) -> T) -> T {
        match self {
            Self::Llama(shared) => f(&mut shared.solve_lm()),
            #[cfg(feature = "remote")]
            Self::Remote(shared) => f(&mut shared.solve_lm()),
            Self::Locked(lm) => f(lm.lock().as_mut()),
        }
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

thread_local! {
    /// The engines whose solve is running on this thread (their addresses): a call into one of
    /// them from an event callback would deadlock on its lock.
    static SOLVING: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Marks an engine as solving on this thread until dropped (also when the solve panics).
struct SolvingHere(usize);

impl SolvingHere {
    fn enter(engine: &Engine) -> Option<Self> {
        let key = engine as *const Engine as usize;
        SOLVING.with(|s| {
            let mut s = s.borrow_mut();
            if s.contains(&key) {
                None
            } else {
                s.push(key);
                Some(Self(key))
            }
        })
    }

    fn active(engine: &Engine) -> bool {
        let key = engine as *const Engine as usize;
        SOLVING.with(|s| s.borrow().contains(&key))
    }
}

impl Drop for SolvingHere {
    fn drop(&mut self) {
        SOLVING.with(|s| s.borrow_mut().retain(|k| *k != self.0));
    }
}

impl Engine {
    /// Loads a model and creates its context: [`Engine::llama`] over [`Model::session`].
    ///
    /// # Errors
    /// As [`Model::load`] and [`Model::session`].
    pub fn load(model: &ModelOptions, context: &ContextOptions) -> Result<Self, Error> {
        // Checked before the (slow) load, so that a bad setting fails at once.
        context.validate()?;
        Ok(Self::llama(Model::load(model)?.session(context)?))
    }

    /// An engine over a llama.cpp context: shared by concurrent solves, whose branches are
    /// decoded in the same forward passes ([`SharedLlama`]), unless it was opened with
    /// [`ContextOptions::deterministic`] (then one solve at a time, each from a fresh cache).
    pub fn llama(lm: LlamaLm) -> Self {
        let serial = lm.deterministic().then(|| Mutex::new(()));
        Self::new(SharedLm::Llama(SharedLlama::new(lm)), serial)
    }

    /// Connects to models served over the OpenAI-compatible API: [`Engine::remote`] over
    /// [`RemoteLm::connect`].
    ///
    /// # Errors
    /// As [`RemoteLm::connect`].
    #[cfg(feature = "remote")]
    pub fn connect(remote: &RemoteOptions) -> Result<Self, Error> {
        Ok(Self::remote(RemoteLm::connect(remote)?))
    }

    /// An engine over a connection to servers: concurrent solves share it, its cap on requests
    /// in flight and its choice of server ([`SharedRemote`]); `lm`'s own nodes are not carried
    /// over.
    #[cfg(feature = "remote")]
    pub fn remote(lm: RemoteLm) -> Self {
        Self::new(SharedLm::Remote(SharedRemote::new(lm)), None)
    }

    /// An engine over any other [`Lm`] (a scripted one in tests, a backend of your own),
    /// serving one solve at a time. A [`LlamaLm`] or [`RemoteLm`] given here is served one solve
    /// at a time too: [`Engine::llama`] and [`Engine::remote`] share them between solves.
    pub fn from_lm(lm: impl Lm + Send + 'static) -> Self {
        Self::new(SharedLm::Locked(Mutex::new(Box::new(lm))), None)
    }

    fn new(lm: SharedLm, serial: Option<Mutex<()>>) -> Self {
        Self {
            lm,
            serial,
            cancel_epoch: Arc::default(),
        }
    }

    /// Solves `problem` with `strategy`. Every node the strategy made is released afterwards.
    ///
    /// # Errors
    /// An invalid problem or configuration ([`Error::Config`]); model errors.
    pub fn solve(&self, problem: &Problem, strategy: &StrategyConfig) -> Result<Outcome, Error> {
        self.solve_with(problem, strategy, &mut |_| Flow::Continue)
    }

    /// As [`Engine::solve`], calling `events` (on this thread) for every [`Event`]; returning
    /// [`Flow::Stop`] cancels the search. A cancelled solve (here or through [`Engine::cancel`])
    /// stops within one forward pass: a tree search (MCTS, beam) that had begun returns the best
    /// of what it had found, its tree's stop reason
    /// [`StopReason::Cancelled`](crate::strategy::StopReason); the other strategies, and any
    /// solve cancelled before it got the engine, return [`Error::Cancelled`]. The [`Event::Candidate`] and
    /// [`Event::Done`] events come after the search has finished: a [`Flow::Stop`] returned for
    /// them stops further events but never discards the finished outcome.
    ///
    /// # Errors
    /// As [`Engine::solve`]; cancellation; [`Error::Reentrant`] when called from an event
    /// callback of a solve running on this engine.
    pub fn solve_with(
        &self,
        problem: &Problem,
        strategy: &StrategyConfig,
        events: &mut dyn FnMut(&Event) -> Flow,
    ) -> Result<Outcome, Error> {
        self.solve_with_token(problem, strategy, events, &CancelToken::new())
    }

    /// As [`Engine::solve_with`], also stopping when `cancel` is cancelled (from any thread):
    /// the way to cancel one solve without disturbing the others (a server whose client hung
    /// up). The token is checked before every forward pass.
    ///
    /// # Errors
    /// As [`Engine::solve_with`].
    pub fn solve_with_token(
        &self,
        problem: &Problem,
        strategy: &StrategyConfig,
        events: &mut dyn FnMut(&Event) -> Flow,
        cancel: &CancelToken,
    ) -> Result<Outcome, Error> {
        let Some(_solving) = SolvingHere::enter(self) else {
            return Err(Error::Reentrant);
        };
        let epoch = self.cancel_epoch.load(Ordering::SeqCst);
        let mut observer = Observer::new(events);
        let stop = observer.stop_flag();
        let current = self.cancel_epoch.clone();
        let token = cancel.clone();
        let interrupt: crate::lm::Interrupt = Arc::new(move || {
            stop.load(Ordering::SeqCst)
                || token.is_cancelled()
                || current.load(Ordering::SeqCst) != epoch
        });
        let _serial = self.serial.as_ref().map(Mutex::lock);
        let run = |lm: &mut dyn Lm, observer: &mut Observer<'_>| {
            if interrupt() {
                return Err(Error::Cancelled);
            }
            // A solve alone starts from an empty cache, as in a fresh process: the same problem,
            // strategy and seeds give the same outcome whatever was solved before.
            lm.reset();
            lm.set_interrupt(Some(interrupt.clone()));
            let result = strategy.run_observed(lm, problem, observer);
            lm.set_interrupt(None);
            // A cancellation noticed by the model surfaces as a model error of the strategy; say
            // it plainly.
            match result {
                Err(_) if interrupt() => Err(Error::Cancelled),
                other => other,
            }
        };
        self.lm.with(|lm| run(lm, &mut observer))
    }

    /// Cancels every solve running or waiting on this engine now; later solves are not affected.
    pub fn cancel(&self) {
        self.cancel_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The work done so far by this engine's model, all solves together (on a serialised
    /// engine, waits for a running solve to finish).
    ///
    /// # Panics
    /// On a serialised engine, when called from an event callback of a solve running on it (it
    /// would wait forever).
    pub fn usage(&self) -> Usage {
        match &self.lm {
            SharedLm::Llama(shared) => shared.usage(),
            #[cfg(feature = "remote")]
            SharedLm::Remote(shared) => shared.usage(),
            SharedLm::Locked(lm) => {
                self.check_not_reentrant("usage");
                lm.lock().usage()
            }
        }
    }

    /// What the shared llama.cpp context holds now (sequences, KV cells, nodes, calls in
    /// progress); `None` on other backends.
    pub fn context_load(&self) -> Option<ContextLoad> {
        match &self.lm {
            SharedLm::Llama(shared) => Some(shared.load()),
            _ => None,
        }
    }

    /// Runs `f` with a model of its own: on the llama.cpp and remote backends a fresh solve
    /// handle (its nodes are released afterwards), elsewhere the model itself (waiting for a
    /// running solve).
    ///
    /// # Panics
    /// As [`Engine::usage`].
    pub fn with_lm<T>(&self, f: impl FnOnce(&mut dyn Lm) -> T) -> T {
        if matches!(self.lm, SharedLm::Locked(_)) {
            self.check_not_reentrant("with_lm");
        }
        self.lm.with(f)
    }

    fn check_not_reentrant(&self, what: &str) {
        assert!(
            !SolvingHere::active(self),
            "Engine::{what} called from an event callback of a solve running on the same engine: it would wait forever for that solve"
        );
    }
}
