//! What a search reports while it runs ([`Event`]) and who listens and may stop it
//! ([`Observer`], [`Flow`]).

use serde::{Deserialize, Serialize};

use crate::lm::FinishReason;

#[cfg(doc)]
use super::{Outcome, SearchTree};

/// Something a search did, reported while it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A tree search added a step (`node` indexes its [`SearchTree`]).
    Step {
        /// The new node.
        node: usize,
        /// Its parent.
        parent: usize,
        /// Steps from the root.
        depth: u32,
        /// Tokens of the step.
        tokens: u32,
        /// The step's text.
        text: String,
    },
    /// A tree search valued a step.
    Scored {
        /// The node.
        node: usize,
        /// The self-judge's score (NaN when the search values steps without the judge: MCTS and
        /// beam with `value: logprob`).
        judge: f64,
        /// The node's value.
        value: f64,
    },
    /// A sampling strategy finished a sample, before it is scored: each of best-of-N's samples
    /// once the batch is decoded, each self-correction attempt, each DeepConf trace, each
    /// segment of a deepening branch (its answer is the branch's so far). A [`Flow::Stop`]
    /// cancels the solve, as for a step.
    Sample {
        /// The sample's number in the order this solve drew them (0, 1, …).
        index: usize,
        /// Tokens it generated.
        tokens: u32,
        /// Its answer (none when it stated none, e.g. cut off).
        answer: Option<String>,
        /// Why it ended.
        finish: FinishReason,
    },
    /// A candidate of the finished search, in the outcome's order.
    Candidate {
        /// Its index in [`Outcome::candidates`].
        index: usize,
        /// Its answer.
        answer: Option<String>,
        /// Its score.
        score: f64,
    },
    /// The solve is complete.
    Done {
        /// The chosen answer.
        answer: Option<String>,
        /// Its score.
        score: f64,
    },
}

/// One line saying what happened, the same in every front end (the CLI's progress, serve's
/// `reasoning_content`, the C ABI's `line`): `step #3 after #1 · depth 2 · 17 tokens · …`,
/// `step #3 valued 0.62 · judge 0.70`, `sample 0 · 96 tokens · eos · answer 42`,
/// `candidate #0 · score 0.700 · answer 42`, `done · answer 42 (score 0.700)`. A step's text is
/// put on one line; a precision (`{:.60}`) cuts it to that many characters. A judge's score is
/// left out where the search values steps without the judge (NaN); a missing answer is `(none)`.
impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let answer = |a: &Option<String>| a.as_deref().unwrap_or("(none)").to_string();
        match self {
            Self::Step {
                node,
                parent,
                depth,
                tokens,
                text,
            } => {
                write!(
                    f,
                    "step #{node} after #{parent} · depth {depth} · {tokens} tokens · "
                )?;
                let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
                match f.precision() {
                    Some(n) if line.chars().count() > n => {
                        write!(f, "{}…", line.chars().take(n).collect::<String>())
                    }
                    _ => f.write_str(&line),
                }
            }
            Self::Scored { node, judge, value } => {
                write!(f, "step #{node} valued {value:.2}")?;
                if judge.is_nan() {
                    Ok(())
                } else {
                    write!(f, " · judge {judge:.2}")
                }
            }
            Self::Sample {
                index,
                tokens,
                answer: a,
                finish,
            } => write!(
                f,
                "sample {index} · {tokens} tokens · {finish} · answer {}",
                answer(a)
            ),
            Self::Candidate {
                index,
                answer: a,
                score,
            } => write!(
                f,
                "candidate #{index} · score {score:.3} · answer {}",
                answer(a)
            ),
            Self::Done { answer: a, score } => {
                write!(f, "done · answer {} (score {score:.3})", answer(a))
            }
        }
    }
}

/// What an event callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Cancel the search.
    Stop,
}

/// Receives a strategy's [`Event`]s and tells it to stop. A stop request is shared through
/// [`Observer::stop_flag`] so that the model can also be interrupted between forward passes.
#[derive(Default)]
pub struct Observer<'a> {
    callback: Option<&'a mut dyn FnMut(&Event) -> Flow>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl std::fmt::Debug for Observer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("callback", &self.callback.is_some())
            .field("stop", &self.stop)
            .finish()
    }
}

impl<'a> Observer<'a> {
    /// An observer calling `callback` for every event.
    pub fn new(callback: &'a mut dyn FnMut(&Event) -> Flow) -> Self {
        Self {
            callback: Some(callback),
            stop: std::sync::Arc::default(),
        }
    }

    /// The flag set when a stop is requested (by the callback or by anyone holding it).
    pub fn stop_flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.stop.clone()
    }

    /// Reports `event`.
    ///
    /// # Errors
    /// [`DecodeError::Cancelled`](crate::DecodeError::Cancelled) once a stop was requested.
    pub fn emit(&mut self, event: Event) -> Result<(), crate::error::DecodeError> {
        use std::sync::atomic::Ordering;
        if let Some(cb) = self.callback.as_mut() {
            if cb(&event) == Flow::Stop {
                self.stop.store(true, Ordering::SeqCst);
            }
        }
        self.check()
    }

    /// Reports `event` about work that is already done, unless a stop was requested before; a
    /// stop requested now only ends the events.
    pub fn notify(&mut self, event: Event) {
        use std::sync::atomic::Ordering;
        if self.stop.load(Ordering::SeqCst) {
            return;
        }
        if let Some(cb) = self.callback.as_mut() {
            if cb(&event) == Flow::Stop {
                self.stop.store(true, Ordering::SeqCst);
            }
        }
    }

    /// Reports each of `generations` as an [`Event::Sample`], numbered from `first`, with the
    /// answer its candidate will have (`answer` of it: the strategy's own rule, so that the
    /// event and the candidate never disagree).
    ///
    /// # Errors
    /// [`DecodeError::Cancelled`](crate::DecodeError::Cancelled) once a stop was requested.
    pub(crate) fn samples(
        &mut self,
        first: usize,
        generations: &[crate::lm::Generation],
        answer: impl Fn(&crate::lm::Generation) -> Option<String>,
    ) -> Result<(), crate::error::DecodeError> {
        for (i, g) in generations.iter().enumerate() {
            self.emit(Event::Sample {
                index: first + i,
                tokens: g.tokens,
                answer: answer(g),
                finish: g.finish.clone(),
            })?;
        }
        Ok(())
    }

    /// [`DecodeError::Cancelled`](crate::DecodeError::Cancelled) once a stop was requested.
    ///
    /// # Errors
    /// As said.
    pub fn check(&self) -> Result<(), crate::error::DecodeError> {
        if self.stop.load(std::sync::atomic::Ordering::SeqCst) {
            Err(crate::error::DecodeError::Cancelled)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_display_as_one_line() {
        let step = Event::Step {
            node: 3,
            parent: 1,
            depth: 2,
            tokens: 17,
            text: "  First,\n add   7 and 5.\n".into(),
        };
        assert_eq!(
            step.to_string(),
            "step #3 after #1 · depth 2 · 17 tokens · First, add 7 and 5."
        );
        assert_eq!(
            format!("{step:.6}"),
            "step #3 after #1 · depth 2 · 17 tokens · First,…"
        );
        let scored = |judge| Event::Scored {
            node: 3,
            judge,
            value: 0.6,
        };
        assert_eq!(scored(f64::NAN).to_string(), "step #3 valued 0.60");
        assert_eq!(scored(0.7).to_string(), "step #3 valued 0.60 · judge 0.70");
        let sample = Event::Sample {
            index: 0,
            tokens: 96,
            answer: None,
            finish: FinishReason::MaxTokens,
        };
        assert_eq!(
            sample.to_string(),
            format!(
                "sample 0 · 96 tokens · {} · answer (none)",
                FinishReason::MaxTokens
            )
        );
        let done = Event::Done {
            answer: Some("42".into()),
            score: 0.7,
        };
        assert_eq!(done.to_string(), "done · answer 42 (score 0.700)");
        let candidate = Event::Candidate {
            index: 1,
            answer: Some("42".into()),
            score: 0.7,
        };
        assert_eq!(
            candidate.to_string(),
            "candidate #1 · score 0.700 · answer 42"
        );
    }
}
