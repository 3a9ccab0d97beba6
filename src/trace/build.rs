//! Building a [`Trace`] from a strategy's [`Outcome`]: a tree search's tree as it is, a
//! sampling strategy's generations, inserted texts and user turns as its timeline recorded them
//! (see the module docs of [`trace`](super) for the shapes).

use super::{split_steps, NodeKind, Provenance, Trace, TraceNode, TRACE_FORMAT};
use crate::strategy::{EntryKind, Outcome, Problem};

impl Trace {
    /// The trace of `outcome`, a solve of `problem` (whose id is `id`).
    pub fn from_outcome(
        id: impl Into<String>,
        problem: &Problem,
        outcome: &Outcome,
        provenance: Provenance,
    ) -> Self {
        // The conversation as the search sent it; rendered from the strategy's prompt settings
        // only for an outcome that did not record it (written before it was recorded).
        let prompt = if outcome.prompt.is_empty() {
            provenance.strategy.prompt().messages(&problem.question)
        } else {
            outcome.prompt.clone()
        };
        let mut trace = Self {
            format: TRACE_FORMAT,
            id: id.into(),
            question: problem.question.clone(),
            reference: problem.answer.clone(),
            prompt,
            strategy: outcome.strategy.clone(),
            nodes: Vec::new(),
            candidates: Vec::new(),
            chosen: Vec::new(),
            answer: outcome.answer.clone(),
            correct: outcome.correct,
            stop: outcome.tree.as_ref().map(|t| t.stop),
            usage: outcome.usage,
            provenance,
            r3: outcome.r3.clone(),
        };
        match &outcome.tree {
            Some(tree) => {
                trace.nodes = tree
                    .nodes
                    .iter()
                    .map(|n| TraceNode {
                        id: n.id,
                        parent: n.parent,
                        text: n.text.clone(),
                        kind: NodeKind::Generated,
                        tokens: n.tokens,
                        logprob: n.logprob,
                        judge: n.judge,
                        visits: n.visits,
                        value: n.value,
                        terminal: n.terminal,
                        answer: n.answer.clone(),
                        correct: n.correct,
                    })
                    .collect();
                trace.candidates = tree
                    .nodes
                    .iter()
                    .filter(|n| n.terminal)
                    .map(|n| n.id)
                    .collect();
                let last = *tree.chosen.last().unwrap_or(&0);
                if !trace.candidates.contains(&last) && last != 0 {
                    trace.candidates.push(last);
                }
                trace.chosen = tree.chosen.clone();
            }
            None => trace.push_sampled(outcome),
        }
        trace
    }

    /// The nodes of a sampling strategy's outcome: its generations, inserted texts and user turns
    /// as its timeline recorded them, or, for strategies without one (`best_of_n`, `deepconf`),
    /// one generation per candidate.
    fn push_sampled(&mut self, outcome: &Outcome) {
        self.nodes.push(TraceNode {
            visits: outcome.candidates.len() as u32,
            ..TraceNode::new(0, None, NodeKind::Generated, String::new())
        });
        let ends = match self.push_timeline(outcome) {
            Some(ends) if ends.len() == outcome.candidates.len() => ends,
            // No timeline, or one that does not fit the candidates (an outcome edited by hand):
            // each candidate's text is one generation.
            _ => {
                self.nodes.truncate(1);
                outcome
                    .candidates
                    .iter()
                    .map(|c| self.push_generation(0, &c.text, c.tokens, c.logprob))
                    .collect()
            }
        };
        for (i, (&end, c)) in ends.iter().zip(&outcome.candidates).enumerate() {
            let node = &mut self.nodes[end];
            node.judge = c.judge;
            node.value = c.score.clamp(0.0, 1.0);
            node.terminal = true;
            node.answer = c.answer.clone();
            node.correct = c.correct;
            self.candidates.push(end);
            if i == outcome.chosen {
                self.chosen = self.path(end);
            }
        }
        if self.chosen.is_empty() {
            self.chosen = vec![0];
        }
    }

    /// Chains for the timeline's branches, in branch order; returns the nodes where candidates
    /// end: an assistant message ends before a user turn and at its branch's end (so a
    /// self-correction's attempts each end one, a deepening branch ends one). `None` without a
    /// timeline.
    fn push_timeline(&mut self, outcome: &Outcome) -> Option<Vec<usize>> {
        let branches = outcome.timeline.iter().map(|e| e.branch).max()? + 1;
        let mut ends = Vec::new();
        for branch in 0..branches {
            let entries: Vec<_> = outcome
                .timeline
                .iter()
                .filter(|e| e.branch == branch)
                .collect();
            let mut at = 0;
            for (k, e) in entries.iter().enumerate() {
                at = match e.kind {
                    EntryKind::Generated => {
                        self.push_generation(at, &e.text, e.tokens as u32, e.logprob)
                    }
                    EntryKind::Trigger => self.push_node(at, NodeKind::Inserted, &e.text),
                    EntryKind::Revision => self.push_node(at, NodeKind::UserTurn, &e.text),
                };
                let message_ends = entries
                    .get(k + 1)
                    .is_none_or(|next| next.kind == EntryKind::Revision);
                if e.kind == EntryKind::Generated && message_ends {
                    ends.push(at);
                }
            }
        }
        Some(ends)
    }

    /// One generation below `parent`, split after blank lines; its tokens and log-probability
    /// on its last step. Returns that step's id.
    fn push_generation(&mut self, parent: usize, text: &str, tokens: u32, logprob: f64) -> usize {
        let mut at = parent;
        for step in split_steps(text) {
            at = self.push_node(at, NodeKind::Generated, step);
        }
        let last = &mut self.nodes[at];
        last.tokens = tokens;
        last.logprob = logprob;
        at
    }

    fn push_node(&mut self, parent: usize, kind: NodeKind, text: &str) -> usize {
        let id = self.nodes.len();
        self.nodes
            .push(TraceNode::new(id, Some(parent), kind, text.to_string()));
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lm::Message;
    use crate::strategy::StrategyConfig;
    use crate::trace::ModelId;

    fn scripted(
        step: impl FnMut(&crate::lm::scripted::StepQuery<'_>) -> String + Send + 'static,
    ) -> crate::lm::scripted::ScriptedLm {
        let mut step = step;
        crate::lm::scripted::ScriptedLm::new(
            move |q: &crate::lm::scripted::StepQuery<'_>| crate::lm::scripted::ScriptedStep {
                text: step(q),
                eos: true,
                logprob_per_token: -0.25,
                confidence: Vec::new(),
                ..Default::default()
            },
            |_| 0.5,
        )
    }

    fn provenance(strategy: &StrategyConfig) -> Provenance {
        let model = ModelId {
            name: "scripted".into(),
            sha256: String::new(),
        };
        Provenance::new(&model, strategy, false)
    }

    #[test]
    fn a_self_correction_is_one_conversation_of_attempts_and_requests() {
        use crate::strategy::SelfCorrectConfig;
        use crate::trace::export::{self, ExportOptions, Format};
        let config = SelfCorrectConfig {
            rounds: 1,
            accept_threshold: None,
            ..SelfCorrectConfig::default()
        };
        let revision = config.revision_prompt.clone();
        let first = "3 + 4 = 8.\n\nThe answer is 8.";
        let second = "I added wrongly.\n\n3 + 4 = 7.\n\nThe answer is 7.";
        let asked = revision.clone();
        let mut lm = scripted(move |q| {
            if q.text.contains(&asked) {
                second
            } else {
                first
            }
            .to_string()
        });
        let problem = Problem::new("What is 3 + 4?").with_answer("7");
        let strategy = StrategyConfig::SelfCorrect(config);
        let outcome = strategy.run(&mut lm, &problem).unwrap();
        let trace = Trace::from_outcome("q", &problem, &outcome, provenance(&strategy));
        trace.validate().unwrap();
        let [a, b] = trace.candidates[..] else {
            panic!("two attempts: {:?}", trace.candidates)
        };
        // Attempt 2 hangs below attempt 1 and the request, as the model saw it.
        let turn = trace.nodes[b].parent.map(|p| trace.path(p)).unwrap();
        let turn = *turn
            .iter()
            .find(|&&i| trace.nodes[i].kind == NodeKind::UserTurn)
            .unwrap();
        assert_eq!(trace.nodes[turn].parent, Some(a));
        assert_eq!(trace.nodes[turn].text, revision);
        assert!(trace.path(b).contains(&a));
        for (end, candidate) in [(a, &outcome.candidates[0]), (b, &outcome.candidates[1])] {
            assert_eq!(trace.text(end), candidate.text);
            let tokens: u32 = trace.message_path(end)[1..]
                .iter()
                .map(|&i| trace.nodes[i].tokens)
                .sum();
            assert_eq!(tokens, candidate.tokens);
            assert_eq!(trace.nodes[end].correct, candidate.correct);
        }
        assert_eq!(trace.steps(b).len(), 3, "{:?}", trace.steps(b));
        let mut context = outcome.prompt.clone();
        assert_eq!(trace.context(a), context);
        context.push(Message::new("assistant", first));
        context.push(Message::user(revision));
        assert_eq!(trace.context(b), context);
        assert_eq!(trace.chosen, trace.path(b));

        // The exports: the right second attempt is an SFT conversation of four messages; the
        // wrong first one's steps reach no right answer (the one below the request is another
        // message's), so its PRM labels fall to 0; the two attempts answer different
        // conversations and make no preference pair.
        let oracle = ExportOptions::by_oracle();
        let sft = export::sft::records(&trace, &oracle);
        assert_eq!(sft.len(), 1);
        assert_eq!(sft[0].messages[..3], context[..]);
        assert_eq!(sft[0].messages[3].content, second);
        let prm = export::prm::records(&trace, &oracle);
        assert_eq!(
            prm.len(),
            1,
            "only the first attempt has a one-prompt record"
        );
        assert_eq!(prm[0].completions.join("\n\n"), first);
        assert_eq!(prm[0].values.last(), Some(&0.0), "{:?}", prm[0].values);
        match &prm[0].labels {
            export::prm::Labels::Bool(v) => assert_eq!(v.last(), Some(&false), "{v:?}"),
            other => panic!("{other:?}"),
        }
        assert!(export::preference::records(&trace, &oracle).is_empty());
        // No splice crosses the request: the first attempt's continuation is not the second.
        for record in export::records(&trace, Format::Correction, &oracle) {
            assert!(!record.to_string().contains("3 + 4 = 7"), "{record}");
        }
        // And the JSON reads back the same.
        let json = serde_json::to_string(&trace).unwrap();
        assert!(json.contains(r#""kind":"user_turn""#));
        assert_eq!(Trace::from_json(&json).unwrap(), trace);
    }

    #[test]
    fn a_deepening_branch_is_its_segments_and_the_inserted_triggers() {
        use crate::strategy::DeepeningConfig;
        let config = DeepeningConfig {
            width: 2,
            ..DeepeningConfig::default()
        };
        let trigger = config.trigger.clone();
        let mut lm = scripted(|_| "2 * 3 = 6.\n\nThe answer is 6.".to_string());
        let problem = Problem::new("What is 2 * 3?").with_answer("6");
        let strategy = StrategyConfig::Deepening(config);
        let outcome = strategy.run(&mut lm, &problem).unwrap();
        let trace = Trace::from_outcome("q", &problem, &outcome, provenance(&strategy));
        trace.validate().unwrap();
        assert_eq!(trace.candidates.len(), 2);
        for (&end, candidate) in trace.candidates.iter().zip(&outcome.candidates) {
            let path = trace.message_path(end);
            assert_eq!(path[0], 0, "one message from the root");
            assert_eq!(trace.text(end), candidate.text);
            let inserted: Vec<usize> = path
                .iter()
                .copied()
                .filter(|&i| trace.nodes[i].kind == NodeKind::Inserted)
                .collect();
            assert!(
                !inserted.is_empty(),
                "the segments are joined by the trigger"
            );
            for &i in &inserted {
                assert_eq!(trace.nodes[i].text, trigger);
                assert_eq!(trace.nodes[i].tokens, 0);
            }
            let tokens: u32 = path.iter().map(|&i| trace.nodes[i].tokens).sum();
            assert_eq!(tokens, candidate.tokens);
            let logprob: f64 = path.iter().map(|&i| trace.nodes[i].logprob).sum();
            assert!((logprob - candidate.logprob).abs() < 1e-9);
        }
    }

    #[test]
    fn a_best_of_n_candidate_is_one_generation_in_steps() {
        let strategy = StrategyConfig::default_for("best_of_n").unwrap();
        let mut lm = scripted(|_| "2 + 2 = 4.\n\nThe answer is 4.".to_string());
        let problem = Problem::new("What is 2 + 2?").with_answer("4");
        let outcome = strategy.run(&mut lm, &problem).unwrap();
        let trace = Trace::from_outcome("q", &problem, &outcome, provenance(&strategy));
        for (&end, candidate) in trace.candidates.iter().zip(&outcome.candidates) {
            let path = trace.path(end);
            assert_eq!(path.len(), 3, "root and two steps");
            assert!(path.iter().all(|&i| trace.nodes[i].kind.is_generated()));
            assert_eq!(trace.nodes[path[1]].tokens, 0);
            assert_eq!(trace.nodes[end].tokens, candidate.tokens);
            assert_eq!(trace.context(end), outcome.prompt);
        }
        assert!(!serde_json::to_string(&trace).unwrap().contains(r#""kind""#));
    }

    #[test]
    fn the_trace_keeps_the_prompt_the_search_sent() {
        use crate::lm::scripted::{ScriptedLm, ScriptedStep, StepQuery};
        use crate::strategy::{BeamConfig, BestOfNConfig, PromptConfig};
        let prompt = PromptConfig {
            system: Some("Be brief.".into()),
            template: "Q: {question}".into(),
        };
        let problem = Problem::new("What is 2 + 2?").with_answer("4");
        let model = ModelId {
            name: "scripted".into(),
            sha256: String::new(),
        };
        for strategy in [
            StrategyConfig::BestOfN(BestOfNConfig {
                n: 2,
                prompt: prompt.clone(),
                ..BestOfNConfig::default()
            }),
            StrategyConfig::Beam(BeamConfig {
                prompt: prompt.clone(),
                ..BeamConfig::default()
            }),
        ] {
            let mut lm = ScriptedLm::new(
                |_: &StepQuery<'_>| ScriptedStep {
                    text: "The answer is 4.".into(),
                    eos: true,
                    logprob_per_token: -0.5,
                    confidence: Vec::new(),
                    ..Default::default()
                },
                |_| 0.9,
            );
            let outcome = strategy.run(&mut lm, &problem).unwrap();
            let sent = vec![
                Message::system("Be brief."),
                Message::user("Q: What is 2 + 2?"),
            ];
            assert_eq!(outcome.prompt, sent, "{}", strategy.name());
            // The trace takes the prompt from the outcome, not from the provenance's config.
            let other = StrategyConfig::default_for(strategy.name()).unwrap();
            let trace = Trace::from_outcome(
                "q",
                &problem,
                &outcome,
                Provenance::new(&model, &other, false),
            );
            assert_eq!(trace.prompt, sent);
        }
    }
}
