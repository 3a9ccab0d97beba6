//! [`Engine`]: a loaded model behind a lock, solving problems with any strategy.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Error;
use crate::lm::{ContextOptions, Lm, Model, ModelOptions, RemoteLm, RemoteOptions, Usage};
use crate::strategy::{Event, Flow, Observer, Outcome, Problem, StrategyConfig};

/// A model and its inference context, ready to solve problems.
///
/// Thread rules: an `Engine` is `Send + Sync`; solves from several threads are served one at a
/// time (the context is behind a mutex), in the order the lock is granted. [`Engine::cancel`] may
/// be called from any thread at any time.
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

impl Engine {
    /// Loads a model and creates its context.
    ///
    /// # Errors
    /// As [`Model::load`] and [`Model::session`].
    pub fn load(model: &ModelOptions, context: &ContextOptions) -> Result<Self, Error> {
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
    /// stops within one forward pass: a tree search (MCTS, beam) returns the best of what it had
    /// found, its tree's stop reason [`StopReason::Cancelled`](crate::strategy::StopReason);
    /// the other strategies return [`DecodeError::Cancelled`](crate::DecodeError::Cancelled).
    ///
    /// # Errors
    /// As [`Engine::solve`]; cancellation.
    pub fn solve_with(
        &self,
        problem: &Problem,
        strategy: &StrategyConfig,
        events: &mut dyn FnMut(&Event) -> Flow,
    ) -> Result<Outcome, Error> {
        let epoch = self.cancel_epoch.load(Ordering::SeqCst);
        let mut observer = Observer::new(events);
        let stop = observer.stop_flag();
        let current = self.cancel_epoch.clone();
        let interrupt: crate::lm::Interrupt = Arc::new(move || {
            stop.load(Ordering::SeqCst) || current.load(Ordering::SeqCst) != epoch
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

    /// The work done so far by this engine's model.
    pub fn usage(&self) -> Usage {
        self.lm.lock().usage()
    }

    /// Runs `f` with exclusive access to the model.
    pub fn with_lm<T>(&self, f: impl FnOnce(&mut dyn Lm) -> T) -> T {
        let mut lm = self.lm.lock();
        f(lm.as_mut())
    }
}
