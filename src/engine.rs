//! [`Engine`]: a loaded model behind a lock, solving problems with any strategy.

use std::fmt;

use parking_lot::Mutex;

use crate::error::Error;
use crate::lm::{ContextOptions, Lm, Model, ModelOptions, Usage};
use crate::strategy::{Outcome, Problem, StrategyConfig};

/// A model and its inference context, ready to solve problems.
///
/// Thread rules: an `Engine` is `Send + Sync`; calls from several threads are served one at a
/// time (the context is behind a mutex).
pub struct Engine {
    lm: Mutex<Box<dyn Lm + Send>>,
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

    /// An engine over any [`Lm`] (another backend, or a scripted one in tests).
    pub fn from_lm(lm: impl Lm + Send + 'static) -> Self {
        Self {
            lm: Mutex::new(Box::new(lm)),
        }
    }

    /// Solves `problem` with `strategy`. Every node the strategy made is released afterwards.
    ///
    /// # Errors
    /// An invalid problem or configuration ([`Error::Config`]); model errors.
    pub fn solve(&self, problem: &Problem, strategy: &StrategyConfig) -> Result<Outcome, Error> {
        let mut lm = self.lm.lock();
        // Every solve starts from an empty cache, as in a fresh process: the same problem,
        // strategy and seeds give the same outcome whatever was solved before.
        lm.reset();
        strategy.run(lm.as_mut(), problem)
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
