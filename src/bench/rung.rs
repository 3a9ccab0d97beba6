//! A rung of the ladder: a strategy under a name, parsed from `NAME=JSON` (a whole `{"type": …}`
//! object) or from a shorthand (`greedy`, `vote@8`, `beam@2048`, …), and ladders of them read
//! from a file and checked.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::lm::SamplingParams;
use crate::strategy::{BestOfNConfig, Rerank, StrategyConfig};

/// One strategy of the ladder, under the name the report and plot show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rung {
    /// The rung's name (unique in a ladder). The part before `@` names its curve in the plot.
    pub name: String,
    /// The strategy.
    pub strategy: StrategyConfig,
}

impl Rung {
    /// Parses `NAME=JSON` (a whole `{"type": …}` strategy object) or a shorthand:
    ///
    /// - `greedy`: one greedy sample (best-of-N with `n` 1 at temperature 0);
    /// - `RERANK@N`: best-of-N with `N` samples ranked by `RERANK` (any name
    ///   [`Rerank::parse`] knows: `vote@8`, `judge@8`, `logprob@8`, `weighted_vote@8`, …);
    /// - `beam@TOKENS`, `mcts@TOKENS`: the tree search with that token budget;
    /// - `self_correct@ROUNDS`, `deepening@WIDTH`;
    /// - `STRATEGY@N` for another strategy whose configuration has a field `n`;
    /// - a strategy's name alone (`beam`, `mcts`, …): its default configuration.
    ///
    /// `max_tokens` (when given) replaces a shorthand's top-level `max_tokens` (new tokens per
    /// sample or attempt: best-of-N, self-correct); JSON rungs are taken as written.
    ///
    /// # Errors
    /// [`ConfigError`] saying which form was expected.
    pub fn parse(spec: &str, max_tokens: Option<u32>) -> Result<Self, ConfigError> {
        let spec = spec.trim();
        if let Some((name, json)) = spec.split_once('=') {
            let name = name.trim();
            check_name(name)?;
            let json = json.trim();
            let value: serde_json::Value = serde_json::from_str(json).map_err(|e| {
                ConfigError::new(
                    "rung",
                    format!("rung {name:?}: the strategy is not valid JSON: {e}"),
                )
            })?;
            return Self::from_value(name, value);
        }
        check_name(spec)?;
        let mut value = shorthand(spec)?;
        if let (Some(m), Some(obj)) = (max_tokens, value.as_object_mut()) {
            if obj.contains_key("max_tokens") {
                obj.insert("max_tokens".into(), m.into());
            }
        }
        Self::from_value(spec, value)
    }

    /// A rung from a strategy given as JSON (a whole `{"type": …}` object).
    ///
    /// # Errors
    /// [`ConfigError`] when the object has no `"type"` or is not a valid strategy.
    pub fn from_value(name: &str, value: serde_json::Value) -> Result<Self, ConfigError> {
        check_name(name)?;
        if value.get("type").is_none() {
            return Err(ConfigError::new(
                "rung",
                format!(
                    "rung {name:?}: the strategy needs a \"type\" (best_of_n, beam, mcts, …), e.g. {name}={{\"type\": \"best_of_n\", \"n\": 4}}"
                ),
            ));
        }
        let strategy = StrategyConfig::from_json("", &value.to_string())
            .map_err(|e| ConfigError::new("rung", format!("rung {name:?}: {e}")))?;
        Ok(Self {
            name: name.to_string(),
            strategy,
        })
    }
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.chars().any(|c| c.is_control() || c == '"') {
        return Err(ConfigError::new(
            "rung",
            format!(
                "{name:?} is not a usable rung name; give NAME=JSON or a shorthand such as vote@8"
            ),
        ));
    }
    Ok(())
}

/// The configuration a shorthand stands for, as JSON.
fn shorthand(spec: &str) -> Result<serde_json::Value, ConfigError> {
    let bad = |why: String| {
        ConfigError::new(
            "rung",
            format!("{spec:?}: {why}; a rung is NAME=JSON, or greedy, RERANK@N (vote@8, judge@8, …), beam@TOKENS, mcts@TOKENS, self_correct@ROUNDS, deepening@WIDTH, or a strategy's or preset's name (bon, majority, …)"),
        )
    };
    let to_value = |c: &StrategyConfig| serde_json::to_value(c).expect("configs serialise");
    let (head, size) = match spec.split_once('@') {
        None => (spec, None),
        Some((h, s)) => {
            let n: u64 = s
                .trim()
                .parse()
                .map_err(|_| bad(format!("{s:?} after @ is not a whole number")))?;
            (h.trim(), Some(n))
        }
    };
    if head.eq_ignore_ascii_case("greedy") {
        if size.is_some() {
            return Err(bad("greedy takes no @".into()));
        }
        return Ok(to_value(&StrategyConfig::BestOfN(BestOfNConfig {
            n: 1,
            sampling: SamplingParams::greedy(),
            rerank: Rerank::Vote,
            ..BestOfNConfig::default()
        })));
    }
    if let Ok(rerank) = Rerank::parse(head) {
        let n = size.ok_or_else(|| bad(format!("say how many samples: {head}@8")))?;
        let n = u32::try_from(n).map_err(|_| bad("too many samples".into()))?;
        return Ok(to_value(&StrategyConfig::BestOfN(BestOfNConfig {
            n,
            rerank,
            ..BestOfNConfig::default()
        })));
    }
    let config = StrategyConfig::named(head).map_err(|e| bad(e.to_string()))?;
    let mut value = to_value(&config);
    let Some(size) = size else {
        return Ok(value);
    };
    let obj = value.as_object_mut().expect("a strategy is an object");
    match config.name() {
        "mcts" | "beam" => {
            obj.insert("budget".into(), serde_json::json!({ "tokens": size }));
        }
        "deepening" => {
            obj.insert("width".into(), size.into());
        }
        "self_correct" => {
            obj.insert("rounds".into(), size.into());
        }
        other if obj.contains_key("n") => {
            let _ = other;
            obj.insert("n".into(), size.into());
        }
        other => {
            return Err(bad(format!(
                "{other} has no size that @ could set; give it as NAME=JSON"
            )))
        }
    }
    Ok(value)
}

/// Reads a ladder file: a JSON array whose elements are rung strings (as [`Rung::parse`]
/// takes) or objects `{"name": …, "strategy": {"type": …}}`.
///
/// # Errors
/// [`ConfigError`] naming the element that is wrong.
pub fn parse_ladder(text: &str, max_tokens: Option<u32>) -> Result<Vec<Rung>, ConfigError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ConfigError::new("ladder", format!("not valid JSON: {e}")))?;
    let items = value.as_array().ok_or_else(|| {
        ConfigError::new(
            "ladder",
            "must be a JSON array of rungs: \"vote@8\" or {\"name\": …, \"strategy\": {\"type\": …}}",
        )
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            serde_json::Value::String(s) => Rung::parse(s, max_tokens),
            serde_json::Value::Object(o) => {
                let name = o.get("name").and_then(|n| n.as_str()).ok_or_else(|| {
                    ConfigError::new("ladder", format!("rung {i}: missing \"name\""))
                })?;
                let strategy = o.get("strategy").cloned().ok_or_else(|| {
                    ConfigError::new("ladder", format!("rung {i}: missing \"strategy\""))
                })?;
                Rung::from_value(name, strategy)
            }
            _ => Err(ConfigError::new(
                "ladder",
                format!("rung {i}: expected a string or an object"),
            )),
        })
        .collect()
}

/// Checks a ladder: at least one rung, and unique names.
///
/// # Errors
/// [`ConfigError`] naming the repeated rung.
pub fn check_ladder(rungs: &[Rung]) -> Result<(), ConfigError> {
    if rungs.is_empty() {
        return Err(ConfigError::new(
            "rung",
            "no rung given; add --rung greedy --rung vote@8 or --ladder FILE",
        ));
    }
    let mut seen = HashSet::new();
    for r in rungs {
        if !seen.insert(r.name.as_str()) {
            return Err(ConfigError::new(
                "rung",
                format!("rung {:?} is given twice; names must be unique", r.name),
            ));
        }
        r.strategy.validate()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthands_expand_to_strategies() {
        let g = Rung::parse("greedy", Some(64)).unwrap();
        let StrategyConfig::BestOfN(c) = &g.strategy else {
            panic!("greedy is best-of-n")
        };
        assert_eq!((c.n, c.max_tokens, c.sampling.temperature), (1, 64, 0.0));
        let v = Rung::parse("vote@8", None).unwrap();
        let StrategyConfig::BestOfN(c) = &v.strategy else {
            panic!("vote@8 is best-of-n")
        };
        assert_eq!((c.n, c.rerank), (8, Rerank::Vote));
        let b = Rung::parse("beam@2048", Some(64)).unwrap();
        let StrategyConfig::Beam(c) = &b.strategy else {
            panic!("beam@2048 is beam")
        };
        assert_eq!(c.budget.tokens, Some(2048));
        let m = Rung::parse("mcts", None).unwrap();
        assert_eq!(m.strategy.name(), "mcts");
        let d = Rung::parse("deepening@4", None).unwrap();
        let StrategyConfig::Deepening(c) = &d.strategy else {
            panic!("deepening")
        };
        assert_eq!(c.width, 4);
        // A preset of the strategy table is a rung too.
        let bon = Rung::parse("bon@4", None).unwrap();
        let StrategyConfig::BestOfN(c) = &bon.strategy else {
            panic!("bon is best-of-n")
        };
        assert_eq!((c.n, c.rerank), (4, Rerank::Judge));
    }

    #[test]
    fn json_rungs_take_any_strategy_and_bad_ones_say_why() {
        let r = Rung::parse(r#"wide={"type": "beam", "width": 5}"#, Some(7)).unwrap();
        assert_eq!(r.name, "wide");
        let StrategyConfig::Beam(c) = &r.strategy else {
            panic!("beam")
        };
        assert_eq!(c.width, 5);
        let e = Rung::parse(r#"x={"n": 4}"#, None).unwrap_err();
        assert!(e.to_string().contains("\"type\""), "{e}");
        let e = Rung::parse(r#"x={"type": "best_of_n", "bogus": 1}"#, None).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let e = Rung::parse("vote", None).unwrap_err();
        assert!(e.to_string().contains("vote@8"), "{e}");
        let e = Rung::parse("nonsense@3", None).unwrap_err();
        assert!(e.to_string().contains("unknown strategy"), "{e}");
        let e = Rung::parse("vote@many", None).unwrap_err();
        assert!(e.to_string().contains("whole number"), "{e}");
        let ladder = parse_ladder(
            r#"["greedy", {"name": "v2", "strategy": {"type": "best_of_n", "n": 2}}]"#,
            None,
        )
        .unwrap();
        assert_eq!(ladder.len(), 2);
        assert!(check_ladder(&[ladder[0].clone(), ladder[0].clone()]).is_err());
        assert!(check_ladder(&[]).is_err());
    }
}
