//! [`Engine`]: a loaded model behind a lock, solving problems with any strategy.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Error;
use crate::lm::{ContextOptions, Lm, Model, ModelOptions, RemoteLm, RemoteOptions, Usage};
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
/// Thread rules: an `Engine` is `Send + Sync`; solves from several threads are served one at a
/// time (the context is behind a mutex), in the order the lock is granted. [`Engine::cancel`] may
/// be called from any thread at any time, also from an event callback. An event callback must not
/// call [`Engine::solve`], [`Engine::solve_with`], [`Engine::usage`] or [`Engine::with_lm`] on
/// the engine whose solve is calling it: that call would wait forever for the solve that runs
/// it, so a solve refuses it at once with [`Error::Reentrant`] and the others panic.
pub struct Engine {
    lm: Mutex<Box<dyn Lm + Send>>,
    /// Bumped by [`Engine::cancel`]; a solve that saw another value when it began is cancelled.
    cancel_epoch: Arc<AtomicU64>,
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
    /// Loads a model and creates its context.
    ///
    /// # Errors
    /// As [`Model::load`] and [`Model::session`].
    pub fn load(model: &ModelOptions, context: &ContextOptions) -> Result<Self, Error> {
        context.validate().map_err(crate::LoadError::from)?;
        let lm = Model::load(model)?.session(context)?;
        Ok(Self::from_lm(lm))
    }

    /// Connects to models served over the OpenAI-compatible API (the remote backend).
    ///
    /// # Errors
    /// As [`RemoteLm::connect`].
    pub fn connect(remote: &RemoteOptions) -> Result<Self, Error> {
        Ok(Self::from_lm(RemoteLm::connect(remote)?))
    }

    /// An engine over any [`Lm`] (another backend, or a scripted one in tests).
    pub fn from_lm(lm: impl Lm + Send + 'static) -> Self {
        Self {
            lm: Mutex::new(Box::new(lm)),
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
    /// solve cancelled before it got the engine, return
    /// [`DecodeError::Cancelled`](crate::DecodeError::Cancelled). The [`Event::Candidate`] and
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
        let mut lm = self.lm.lock();
        if interrupt() {
            return Err(crate::DecodeError::Cancelled.into());
        }
        // Every solve starts from an empty cache, as in a fresh process: the same problem,
        // strategy and seeds give the same outcome whatever was solved before.
        lm.reset();
        lm.set_interrupt(Some(interrupt.clone()));
        let result = strategy.run_observed(lm.as_mut(), problem, &mut observer);
        lm.set_interrupt(None);
        // A cancellation noticed by the model surfaces as a model error of the strategy; say it
        // plainly.
        match result {
            Err(_) if interrupt() => Err(crate::DecodeError::Cancelled.into()),
            other => other,
        }
    }

    /// Cancels every solve running or waiting on this engine now; later solves are not affected.
    pub fn cancel(&self) {
        self.cancel_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// The work done so far by this engine's model (waits for a running solve to finish).
    ///
    /// # Panics
    /// When called from an event callback of a solve running on this engine (it would wait
    /// forever).
    pub fn usage(&self) -> Usage {
        self.check_not_reentrant("usage");
        self.lm.lock().usage()
    }

    /// Runs `f` with exclusive access to the model (waits for a running solve to finish).
    ///
    /// # Panics
    /// As [`Engine::usage`].
    pub fn with_lm<T>(&self, f: impl FnOnce(&mut dyn Lm) -> T) -> T {
        self.check_not_reentrant("with_lm");
        let mut lm = self.lm.lock();
        f(lm.as_mut())
    }

    fn check_not_reentrant(&self, what: &str) {
        assert!(
            !SolvingHere::active(self),
            "Engine::{what} called from an event callback of a solve running on the same engine: it would wait forever for that solve"
        );
    }
}
