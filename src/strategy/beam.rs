//! Step-level beam search: the cheaper baseline that MCTS must beat.
//!
//! The root gets `width × expansions` first steps; every later level expands each of the `width`
//! live beams into `expansions` next steps — one batched `generate` call per level, then one
//! valuing of all new steps. A path's score ([`ValueSignal`], `value`) is by default its
//! likelihood (`exp` of its mean token log-probability; no model call), or with `value: judge`
//! its steps' in-place judge scores (one batched call per level) combined by `path_score`
//! (default: the last step's). Finished solutions leave the beam; the best `width` unfinished
//! paths go on. The search ends when `width` solutions are finished, no beam is left, or the
//! budget runs out. The answer: a score-weighted vote over the finished solutions' answers
//! (default), or the best finished solution by score; with none finished, the best live path.
//!
//! In the tree, a node's `value` is its path score and `visits` the number of judged nodes in its
//! subtree (itself included).

use serde::{Deserialize, Serialize};

use super::tree::{Budget, Search, StepConfig, StopReason, TreeNode, ValueSignal};
use super::{limits, Outcome, PromptConfig, Strategy};
use crate::error::{ConfigError, Error};
use crate::reward::judge::{JudgeConfig, StepAggregate};
use crate::reward::vote;

/// How the answer is chosen among finished solutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BeamAnswer {
    /// The highest path score.
    Score,
    /// A vote over answers weighted by path score (the default; numeric answers only: free text
    /// cannot be voted on).
    #[default]
    Vote,
}

/// Configuration of this strategy (the module's [`Strategy`] implementation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BeamConfig {
    /// Live beams kept per level, 1..=64.
    pub width: u32,
    /// Next steps sampled per beam, 1..=64.
    pub expansions: u32,
    /// What a path's score is made of: `logprob` (default), the path's likelihood (the geometric
    /// mean of its tokens' probabilities), or `judge`, the in-place self-judge's verdicts on its
    /// steps combined by `path_score`.
    pub value: ValueSignal,
    /// With `value: judge`, how a path's step scores combine into its score.
    pub path_score: StepAggregate,
    /// How the answer is chosen.
    pub answer_by: BeamAnswer,
    /// How steps are sampled and checked.
    pub step: StepConfig,
    /// When to stop.
    pub budget: Budget,
    /// How the solver is asked.
    pub prompt: PromptConfig,
    /// The self-judge.
    pub judge: JudgeConfig,
}

impl Default for BeamConfig {
    fn default() -> Self {
        Self {
            width: 3,
            expansions: 2,
            value: ValueSignal::default(),
            path_score: StepAggregate::Last,
            answer_by: BeamAnswer::Vote,
            step: StepConfig::default(),
            budget: Budget::default(),
            prompt: PromptConfig::default(),
            judge: JudgeConfig::default(),
        }
    }
}

impl BeamConfig {
    /// Checks every field's range.
    ///
    /// # Errors
    /// [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, v) in [("width", self.width), ("expansions", self.expansions)] {
            ConfigError::check_range(field, v, 1..=limits::MAX_CHILDREN, "")?;
        }
        self.step.validate()?;
        self.budget.validate()
    }
}

tree_strategy!(BeamConfig, "beam", votes: BeamAnswer::Vote);

/// Runs the search, reporting every step and verdict through `search`'s observer.
fn run(config: &BeamConfig, mut search: Search<'_, '_>) -> Result<Outcome, Error> {
    let width = config.width as usize;
    let mut beams: Vec<usize> = vec![0];
    let mut finished: Vec<usize> = Vec::new();
    let stop = loop {
        if finished.len() >= width || beams.is_empty() {
            break StopReason::Complete;
        }
        if let Some(limit) = search.exceeded() {
            break StopReason::Budget { limit };
        }
        search.tree.iterations += 1;
        let requests: Vec<(usize, u32)> = if beams == [0] {
            vec![(0, config.width * config.expansions)]
        } else {
            beams.iter().map(|&b| (b, config.expansions)).collect()
        };
        let children = match search.expand(&requests) {
            Ok(c) => c,
            Err(e) => break search.stop_for(e)?,
        };
        if children.is_empty() {
            beams.clear();
            continue;
        }
        if let Err(e) = search.evaluate(&children, config.value) {
            break search.stop_for(e)?;
        }
        let nodes = &mut search.tree.nodes;
        if config.value == ValueSignal::Judge {
            for &c in &children {
                let steps: Vec<f64> = search_path(nodes, c)
                    .into_iter()
                    .filter_map(|i| nodes[i].judge)
                    .collect();
                nodes[c].value = config.path_score.apply(&steps);
            }
        }
        let mut live: Vec<usize> = Vec::new();
        for &c in &children {
            if nodes[c].terminal {
                finished.push(c);
            } else if !nodes[c].dead_end {
                live.push(c);
            }
        }
        live.sort_by(|&a, &b| nodes[b].value.total_cmp(&nodes[a].value).then(a.cmp(&b)));
        live.truncate(width);
        beams = live;
    };
    count_visits(&mut search.tree.nodes);
    let nodes = &search.tree.nodes;
    let best = |ids: &[usize]| {
        ids.iter()
            .copied()
            .max_by(|&a, &b| nodes[a].value.total_cmp(&nodes[b].value).then(b.cmp(&a)))
    };
    let chosen = match config.answer_by {
        BeamAnswer::Vote => {
            let answers: Vec<Option<String>> =
                finished.iter().map(|&i| nodes[i].answer.clone()).collect();
            let weights: Vec<f64> = finished.iter().map(|&i| nodes[i].value).collect();
            vote::weighted(&answers, &weights)
                .and_then(|w| best(&w.members.iter().map(|&m| finished[m]).collect::<Vec<_>>()))
        }
        BeamAnswer::Score => best(&finished),
    };
    let chosen = chosen
        .or_else(|| best(&beams))
        .or_else(|| {
            let all: Vec<usize> = (1..nodes.len()).collect();
            best(&all)
        })
        .unwrap_or(0);
    Ok(search.finish(config.name(), chosen, stop))
}

fn search_path(nodes: &[TreeNode], id: usize) -> Vec<usize> {
    let mut path = vec![id];
    let mut at = id;
    while let Some(p) = nodes[at].parent {
        path.push(p);
        at = p;
    }
    path.reverse();
    path
}

/// `visits` = judged nodes in each subtree, itself included (the root is not judged).
fn count_visits(nodes: &mut [TreeNode]) {
    for i in (0..nodes.len()).rev() {
        let own = u32::from(nodes[i].evaluated);
        let below: u32 = nodes[i].children.iter().map(|&c| nodes[c].visits).sum();
        nodes[i].visits = own + below;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::scripted::{ScriptedLm, ScriptedStep};
    use crate::strategy::search_alone as run;
    use crate::strategy::Problem;

    fn label(text: &str) -> String {
        text.rfind('[')
            .map(|i| text[i + 1..].split(']').next().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    #[test]
    fn keeps_the_best_paths_and_finishes_with_the_best_solution() {
        let value = |l: &str| match l {
            "0" => 0.2,
            "1" => 0.9,
            "2" => 0.5,
            "3" => 0.7,
            "10" => 0.3,
            "11" => 0.8,
            "30" => 0.6,
            "31" => 0.4,
            _ => 0.5,
        };
        let mut lm = ScriptedLm::new(
            |q| {
                let child = format!("{}{}", label(q.text), q.ordinal);
                let end = child == "10" || child == "110";
                ScriptedStep {
                    text: if end {
                        format!("[{child}] The answer is 4.")
                    } else {
                        format!("[{child}]\n\n")
                    },
                    eos: end,
                    logprob_per_token: -1.0,
                    confidence: Vec::new(),
                    ..Default::default()
                }
            },
            move |t| value(&label(t)),
        );
        let config = BeamConfig {
            width: 2,
            expansions: 2,
            value: ValueSignal::Judge,
            answer_by: BeamAnswer::Score,
            ..BeamConfig::default()
        };
        let outcome = run(&config, &mut lm, &Problem::new("q").with_answer("4")).unwrap();
        let tree = outcome.tree.as_ref().unwrap();
        let labels: Vec<String> = tree.nodes.iter().map(|n| label(&n.text)).collect();
        // Level 1: four first steps; [1] .9 and [3] .7 go on. Level 2: [10] finishes; [11] .8
        // and [30] .6 go on ([31] .4 drops). Level 3: [110] finishes: two solutions, done.
        assert_eq!(
            labels,
            ["", "0", "1", "2", "3", "10", "11", "30", "31", "110", "111", "300", "301"]
        );
        assert_eq!(tree.stop, StopReason::Complete);
        assert_eq!(tree.iterations, 3);
        // Path score = the last step's judge score: [110] .5 beats [10] .3.
        assert_eq!(label(&tree.nodes[*tree.chosen.last().unwrap()].text), "110");
        assert_eq!(outcome.candidates.len(), 2);
        assert_eq!(outcome.correct, Some(true));
        // Visits count judged nodes below: [1] holds [1], [10], [11], [110], [111].
        assert_eq!(tree.nodes[2].visits, 5);
        assert_eq!(tree.nodes[0].visits, 12);
        assert_eq!(lm.live_nodes(), 0);
    }

    #[test]
    fn logprob_scores_paths_by_likelihood_and_the_vote_answers() {
        // Width 1, two expansions: the likelier step goes on; the judge is never asked.
        let mut lm = ScriptedLm::new(
            |q| {
                let child = format!("{}{}", label(q.text), q.ordinal);
                let end = child.len() == 2;
                ScriptedStep {
                    text: if end {
                        format!(
                            "[{child}] The answer is {}.",
                            if child == "10" { 3 } else { 4 }
                        )
                    } else {
                        format!("[{child}]\n\n")
                    },
                    eos: end,
                    logprob_per_token: if child.ends_with('1') { -0.1 } else { -0.9 },
                    confidence: Vec::new(),
                    ..Default::default()
                }
            },
            |_| panic!("no judge with value logprob"),
        );
        let config = BeamConfig {
            width: 1,
            expansions: 2,
            ..BeamConfig::default()
        };
        assert_eq!(config.value, ValueSignal::Logprob);
        assert_eq!(config.answer_by, BeamAnswer::Vote);
        let outcome = run(&config, &mut lm, &Problem::new("q").with_answer("4")).unwrap();
        let tree = outcome.tree.as_ref().unwrap();
        let labels: Vec<String> = tree.nodes.iter().map(|n| label(&n.text)).collect();
        // Level 1: [0] (e^-0.9) and [1] (e^-0.1): [1] goes on. Level 2: [10] says 3, [11] 4;
        // one finished solution fills the width of 1: [10] came first.
        assert_eq!(labels, ["", "0", "1", "10", "11"]);
        assert_eq!(tree.judge_tokens, 0);
        let by = |l: &str| tree.nodes.iter().find(|n| label(&n.text) == l).unwrap();
        assert!((by("1").value - (-0.1f64).exp()).abs() < 1e-9);
        assert!(by("11").value > by("10").value);
        // Both finished ones vote, weighted by likelihood: 4 ([11], surer) wins.
        assert_eq!(outcome.answer.as_deref(), Some("4"));
        assert_eq!(tree.nodes[0].visits, 4);
        assert_eq!(lm.live_nodes(), 0);
    }

    #[test]
    fn bad_configs_are_named() {
        for (field, c) in [
            (
                "width",
                BeamConfig {
                    width: 0,
                    ..BeamConfig::default()
                },
            ),
            (
                "expansions",
                BeamConfig {
                    expansions: 65,
                    ..BeamConfig::default()
                },
            ),
        ] {
            assert_eq!(c.validate().unwrap_err().field, field);
        }
    }
}
