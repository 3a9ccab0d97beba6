//! Turning a request into a [`Plan`]: plain generation, or the search its model name (or its
//! `ponder` field) picks, with the client's sampling parameters merged in and every range and
//! cap checked.

use serde_json::{json, Value};

use super::openai::{ApiError, ChatRequest, CompletionRequest, Prompt};
use super::plain::{PlainJob, PlainPrompt};
use super::{alias_of, request, ServeOptions};
use crate::lm::{SamplingParams, MAX_TOP_LOGPROBS};
use crate::strategy::{Problem, PromptConfig};
use crate::StrategyConfig;

/// What a request asks for, checked.
#[derive(Debug, Clone)]
pub enum Plan {
    /// A search over one question: one chosen answer.
    Search {
        /// The strategy to run.
        strategy: Box<StrategyConfig>,
        /// The problem.
        problem: Problem,
    },
    /// Plain generation: `n` completions per prompt.
    Plain(PlainJob),
}

impl Plan {
    /// The label of `/metrics` (`plain` or the strategy's name).
    pub fn label(&self) -> &'static str {
        match self {
            Self::Search { strategy, .. } => strategy.name(),
            Self::Plain(_) => "plain",
        }
    }

    /// Whether this is plain generation.
    pub fn is_plain(&self) -> bool {
        matches!(self, Self::Plain(_))
    }
}

/// The client's sampling parameters, checked.
#[derive(Debug, Clone, Copy, Default)]
struct Overrides {
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<u64>,
}

impl Overrides {
    fn new(
        temperature: Option<f32>,
        top_p: Option<f32>,
        seed: Option<i64>,
    ) -> Result<Self, ApiError> {
        let (temperature, top_p) = request::sampling(temperature, top_p)?;
        Ok(Self {
            temperature,
            top_p,
            // OpenAI's seed is signed; its bits seed the sampler.
            seed: seed.map(|s| s as u64),
        })
    }

    /// Plain generation's sampling: ponder's defaults under the client's values.
    fn sampling(&self) -> SamplingParams {
        let mut s = SamplingParams::default();
        if let Some(t) = self.temperature {
            s.temperature = t;
        }
        if let Some(p) = self.top_p {
            s.top_p = p;
        }
        if let Some(seed) = self.seed {
            s.seed = seed;
        }
        s
    }
}

/// Turns a chat request into a [`Plan`]: plain generation for a plain model name, else the
/// strategy from the model name's prefix with the client's sampling parameters and the
/// `ponder` config merged over it; every range and cap checked.
///
/// # Errors
/// [`ApiError`] 400 naming the field.
pub fn plan(req: &ChatRequest, options: &ServeOptions) -> Result<Plan, ApiError> {
    let overrides = Overrides::new(req.temperature, req.top_p, req.seed)?;
    request::check_penalties(req.presence_penalty, req.frequency_penalty)?;
    request::at_least("n", req.n, 1)?;
    request::at_least("max_tokens", req.max_tokens, 1)?;
    request::at_least("max_completion_tokens", req.max_completion_tokens, 1)?;
    if let Some(k) = req.top_logprobs {
        if k > MAX_TOP_LOGPROBS {
            return Err(ApiError::invalid(
                "top_logprobs",
                "invalid_value",
                format!("top_logprobs = {k} is above the maximum of {MAX_TOP_LOGPROBS}"),
            ));
        }
        if !req.logprobs {
            return Err(ApiError::invalid(
                "top_logprobs",
                "invalid_value",
                "top_logprobs needs \"logprobs\": true",
            ));
        }
    }
    let (system, question) = conversation(req)?;
    let stop = request::stop_list(req.stop.as_ref())?;
    let (max_tokens, max_param) = match (req.max_completion_tokens, req.max_tokens) {
        (Some(m), _) => (Some(m), "max_completion_tokens"),
        (None, m) => (m, "max_tokens"),
    };
    let n = req.n.unwrap_or(1);
    if alias_of(&req.model).is_none() && req.ponder.is_none() {
        let prompt = PromptConfig {
            system,
            template: "{question}".into(),
        };
        let job = PlainJob {
            prompts: vec![PlainPrompt::Chat(prompt.messages(&question))],
            n,
            best_of: n,
            max_tokens: max_tokens.unwrap_or(options.max_tokens.min(512)),
            sampling: overrides.sampling(),
            stop,
            logprobs: req.logprobs.then(|| req.top_logprobs.unwrap_or(0)),
            echo: false,
        };
        check_plain(&job, options, max_param)?;
        return Ok(Plan::Plain(job));
    }
    if req.logprobs {
        return Err(for_plain_only("logprobs"));
    }
    search(
        &req.model,
        req.ponder.as_ref(),
        n,
        system,
        question,
        overrides,
        max_tokens,
        options,
    )
}

/// Turns a text-completion request into a [`Plan`], as [`plan`] does: a plain model name
/// continues each prompt as raw text (no chat template); a strategy prefix or a `ponder` field
/// runs that search with the one prompt as the question.
///
/// # Errors
/// [`ApiError`] 400 naming the field.
pub fn plan_completion(req: &CompletionRequest, options: &ServeOptions) -> Result<Plan, ApiError> {
    let overrides = Overrides::new(req.temperature, req.top_p, req.seed)?;
    request::check_penalties(req.presence_penalty, req.frequency_penalty)?;
    request::at_least("n", req.n, 1)?;
    request::at_least("best_of", req.best_of, 1)?;
    if let Some(k) = req.logprobs.filter(|&k| k > MAX_TOP_LOGPROBS) {
        return Err(ApiError::invalid(
            "logprobs",
            "invalid_value",
            format!("logprobs = {k} is above the maximum of {MAX_TOP_LOGPROBS}"),
        ));
    }
    let stop = request::stop_list(req.stop.as_ref())?;
    let prompts: Vec<PlainPrompt> = match &req.prompt {
        None => {
            return Err(ApiError::invalid(
                "prompt",
                "missing_required_parameter",
                "prompt is required: the text to continue",
            ))
        }
        Some(Prompt::Text(t)) => vec![PlainPrompt::Text(t.clone())],
        Some(Prompt::Texts(v)) => v.iter().cloned().map(PlainPrompt::Text).collect(),
        Some(Prompt::Tokens(ids)) => vec![PlainPrompt::Tokens(ids.clone())],
        Some(Prompt::TokenLists(l)) => l.iter().cloned().map(PlainPrompt::Tokens).collect(),
    };
    let empty = |p: &PlainPrompt| match p {
        PlainPrompt::Text(t) => t.is_empty(),
        PlainPrompt::Tokens(ids) => ids.is_empty(),
        PlainPrompt::Chat(m) => m.is_empty(),
    };
    if prompts.is_empty() || prompts.iter().any(empty) {
        return Err(ApiError::invalid(
            "prompt",
            "invalid_value",
            "prompt is empty (or a list with an empty prompt); give text to continue",
        ));
    }
    let n = req.n.unwrap_or(1);
    if alias_of(&req.model).is_none() && req.ponder.is_none() {
        let best_of = req.best_of.unwrap_or(n);
        if best_of < n {
            return Err(ApiError::invalid(
                "best_of",
                "invalid_value",
                format!("best_of = {best_of} is below n = {n}: it is how many are sampled to return the best n"),
            ));
        }
        // OpenAI's default for this endpoint.
        let max_tokens = req.max_tokens.unwrap_or(16);
        if max_tokens == 0 && !req.echo {
            return Err(ApiError::invalid(
                "max_tokens",
                "invalid_value",
                "max_tokens = 0 generates nothing; ask for at least 1 token (0 is for echo: scoring the prompt alone)",
            ));
        }
        let job = PlainJob {
            prompts,
            n,
            best_of,
            max_tokens,
            sampling: overrides.sampling(),
            stop,
            logprobs: req.logprobs,
            echo: req.echo,
        };
        check_plain(&job, options, "max_tokens")?;
        return Ok(Plan::Plain(job));
    }
    for (asked, param) in [
        (req.logprobs.is_some(), "logprobs"),
        (req.echo, "echo"),
        (req.best_of.is_some_and(|b| b > 1), "best_of"),
    ] {
        if asked {
            return Err(for_plain_only(param));
        }
    }
    let question = match prompts.as_slice() {
        [PlainPrompt::Text(t)] => t.clone(),
        _ => {
            return Err(ApiError::invalid(
                "prompt",
                "invalid_value",
                "a search answers one question: send one text prompt (token ids and lists are for plain generation)",
            ))
        }
    };
    request::at_least("max_tokens", req.max_tokens, 1)?;
    search(
        &req.model,
        req.ponder.as_ref(),
        n,
        None,
        question,
        overrides,
        req.max_tokens,
        options,
    )
}

fn for_plain_only(param: &str) -> ApiError {
    ApiError::invalid(
        param,
        "unsupported_parameter",
        format!("{param} is given for plain generation only: a search returns the one answer it chose from many samples; leave {param} out, or use the plain model name"),
    )
}

/// Plain generation within the server's caps: sequences (`best_of` per prompt) against
/// `--max-n`, tokens against `--max-tokens`; the sampling in range.
fn check_plain(job: &PlainJob, options: &ServeOptions, max_param: &str) -> Result<(), ApiError> {
    let sequences = u64::from(job.best_of) * job.prompts.len() as u64;
    if sequences > u64::from(options.max_n) {
        let param = if job.prompts.len() > 1 {
            "prompt"
        } else if job.best_of > job.n {
            "best_of"
        } else {
            "n"
        };
        return Err(ApiError::bad_request(
            format!(
                "n = {sequences} completions ({} prompt(s) × {}) is above this server's cap of {} (--max-n); ask for fewer",
                job.prompts.len(),
                job.best_of,
                options.max_n
            ),
            Some(param),
        ));
    }
    if job.max_tokens > options.max_tokens {
        return Err(ApiError::bad_request(
            format!(
                "{max_param} = {} is above this server's cap of {} (--max-tokens); ask for less",
                job.max_tokens, options.max_tokens
            ),
            Some(max_param),
        ));
    }
    job.sampling
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string(), Some(e.field)))
}

/// The search `model` (its prefix) or `ponder` (its `type`) names, configured.
#[allow(clippy::too_many_arguments)]
fn search(
    model: &str,
    ponder: Option<&Value>,
    n: u32,
    system: Option<String>,
    question: String,
    overrides: Overrides,
    max_tokens: Option<u32>,
    options: &ServeOptions,
) -> Result<Plan, ApiError> {
    if n > 1 {
        return Err(ApiError::bad_request(
            "n > 1 asks for several plain generations; a search returns its one chosen answer. Set the search's own width in \"ponder\" instead (e.g. {\"n\": 8} for best-of-n)",
            Some("n"),
        ));
    }
    if let Some(p) = ponder {
        if !p.is_object() {
            return Err(ApiError::bad_request(
                "\"ponder\" must be a JSON object: a strategy config such as {\"type\": \"best_of_n\", \"n\": 8}",
                Some("ponder"),
            ));
        }
    }
    let typed = ponder.and_then(|p| p.get("type")).and_then(Value::as_str);
    let base = match (typed, alias_of(model)) {
        (Some(name), _) => StrategyConfig::default_for(name).map_err(|e| {
            ApiError::bad_request(
                format!("unknown strategy in ponder.type: {}", e.reason),
                Some("ponder.type"),
            )
        })?,
        (None, Some(a)) => a.config(),
        (None, None) => {
            return Err(ApiError::bad_request(
                format!(
                    "\"ponder\" has no \"type\" and the model name {model:?} has no strategy prefix; add \"type\" (one of {}) or use a model name such as bon-{}",
                    StrategyConfig::NAMES.join(", "),
                    options.model_name
                ),
                Some("ponder.type"),
            ))
        }
    };
    let mut value = serde_json::to_value(base).expect("configs serialise");
    // The client's OpenAI parameters, then the explicit config over them.
    apply_sampling(&mut value, overrides, max_tokens);
    if let Some(system) = &system {
        if value["prompt"]["system"].is_null() {
            value["prompt"]["system"] = Value::String(system.clone());
        }
    }
    if let Some(p) = ponder {
        merge(&mut value, p);
    }
    check_caps(&value, "", options)?;
    let strategy: StrategyConfig = serde_json::from_value(value).map_err(|e| {
        let msg = e.to_string();
        let param = if msg.contains("unknown variant") {
            "ponder.type"
        } else {
            "ponder"
        };
        ApiError::bad_request(format!("invalid ponder config: {msg}"), Some(param))
    })?;
    strategy
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string(), Some(&format!("ponder.{}", e.field))))?;
    Ok(Plan::Search {
        strategy: Box::new(strategy),
        problem: Problem::new(question),
    })
}

/// The system text and the question: the last message must be the user's; earlier turns are
/// written out before it.
fn conversation(req: &ChatRequest) -> Result<(Option<String>, String), ApiError> {
    let Some(last) = req.messages.last() else {
        return Err(ApiError::bad_request(
            "messages is empty; send at least one user message",
            Some("messages"),
        ));
    };
    if last.role != "user" {
        return Err(ApiError::bad_request(
            format!(
                "the last message is the {}'s; ponder answers the last user message, so end with one",
                last.role
            ),
            Some("messages"),
        ));
    }
    let mut system = Vec::new();
    let mut history = String::new();
    for m in &req.messages[..req.messages.len() - 1] {
        let text = m.text()?;
        match m.role.as_str() {
            "system" | "developer" => system.push(text),
            "user" => history.push_str(&format!("User: {text}\n\n")),
            "assistant" => history.push_str(&format!("Assistant: {text}\n\n")),
            "tool" => history.push_str(&format!("Tool: {text}\n\n")),
            other => {
                return Err(ApiError::bad_request(
                    format!(
                        "unknown role {other:?}; use system, developer, user, assistant or tool"
                    ),
                    Some("messages"),
                ))
            }
        }
    }
    let question = last.text()?;
    if question.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the last user message is empty; ask something",
            Some("messages"),
        ));
    }
    let question = if history.is_empty() {
        question
    } else {
        format!("{history}User: {question}")
    };
    Ok(((!system.is_empty()).then(|| system.join("\n\n")), question))
}

/// Writes the client's temperature, top_p, seed and max_tokens into every sampling block and
/// per-generation token count the config has.
fn apply_sampling(value: &mut Value, o: Overrides, max_tokens: Option<u32>) {
    let sampling = |s: &mut Value| {
        if !s.is_object() {
            return;
        }
        if let Some(t) = o.temperature {
            s["temperature"] = json!(t);
        }
        if let Some(p) = o.top_p {
            s["top_p"] = json!(p);
        }
        if let Some(seed) = o.seed {
            s["seed"] = json!(seed);
        }
    };
    if let Some(s) = value.get_mut("sampling") {
        sampling(s);
    }
    if let Some(s) = value.get_mut("step").and_then(|s| s.get_mut("sampling")) {
        sampling(s);
    }
    if let Some(m) = max_tokens {
        if value.get("max_tokens").is_some() {
            value["max_tokens"] = json!(m);
        } else if value["step"].get("max_tokens").is_some() {
            value["step"]["max_tokens"] = json!(m);
        }
    }
}

/// Deep-merges `patch` into `base` (objects merge key by key; anything else replaces).
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                match b.get_mut(k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

/// Refuses any width, token count or budget above the server's caps.
fn check_caps(value: &Value, path: &str, o: &ServeOptions) -> Result<(), ApiError> {
    let Value::Object(map) = value else {
        return Ok(());
    };
    for (k, v) in map {
        let here = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        if v.is_object() {
            check_caps(v, &here, o)?;
            continue;
        }
        let Some(x) = v.as_u64() else { continue };
        let (cap, flag) = match k.as_str() {
            "n" | "width" | "k" | "expansions" | "warmup" | "batch" => {
                (u64::from(o.max_n), "--max-n")
            }
            "max_tokens" | "l0" => (u64::from(o.max_tokens), "--max-tokens"),
            "tokens" | "total_budget" => (o.max_budget_tokens, "--max-budget-tokens"),
            _ => continue,
        };
        if x > cap {
            return Err(ApiError::bad_request(
                format!("{here} = {x} is above this server's cap of {cap} ({flag}); ask for less"),
                Some(&format!("ponder.{here}")),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::{openai, plain};
    use crate::strategy::Rerank;

    fn request(json: Value) -> ChatRequest {
        serde_json::from_value(json).unwrap()
    }

    fn user(model: &str) -> Value {
        json!({"model": model, "messages": [{"role": "user", "content": "What is 2+3?"}]})
    }

    fn strategy(p: Plan) -> StrategyConfig {
        match p {
            Plan::Search { strategy, .. } => *strategy,
            Plan::Plain(job) => panic!("plain: {job:?}"),
        }
    }

    fn job(p: Plan) -> plain::PlainJob {
        match p {
            Plan::Plain(job) => job,
            Plan::Search { strategy, .. } => panic!("a search: {strategy:?}"),
        }
    }

    #[test]
    fn prefixes_pick_strategies_and_anything_else_is_plain() {
        let o = ServeOptions::default();
        for (model, name) in [
            ("bon-smol", "best_of_n"),
            ("best-of-n-x", "best_of_n"),
            ("MCTS-gpt-4o", "mcts"),
            ("beam-a", "beam"),
            ("self-correct-a", "self_correct"),
            ("deepening-a", "deepening"),
            ("majority-a", "best_of_n"),
            ("self-consistency-a", "best_of_n"),
            ("deepconf-a", "deepconf"),
        ] {
            let p = plan(&request(user(model)), &o).unwrap();
            assert!(!p.is_plain(), "{model}");
            assert_eq!(p.label(), name, "{model}");
        }
        let StrategyConfig::BestOfN(c) = strategy(plan(&request(user("bon-a")), &o).unwrap())
        else {
            panic!()
        };
        assert_eq!(c.rerank, Rerank::Judge);
        let StrategyConfig::BestOfN(c) = strategy(plan(&request(user("majority-a")), &o).unwrap())
        else {
            panic!()
        };
        assert_eq!(c.rerank, Rerank::Vote);
        for model in ["smol", "", "bon", "gpt-4o-mini"] {
            assert!(
                plan(&request(user(model)), &o).unwrap().is_plain(),
                "{model}"
            );
        }
    }

    #[test]
    fn openai_parameters_and_the_ponder_config_are_merged_over_the_alias() {
        let o = ServeOptions::default();
        let mut r = user("mcts-x");
        r["temperature"] = json!(0.5);
        r["max_tokens"] = json!(40);
        r["seed"] = json!(7);
        r["ponder"] = json!({"budget": {"iterations": 3}, "k": 2});
        let StrategyConfig::Mcts(c) = strategy(plan(&request(r), &o).unwrap()) else {
            panic!()
        };
        assert_eq!(c.k, 2);
        assert_eq!(c.budget.iterations, Some(3));
        assert_eq!(
            c.budget.tokens,
            Some(1024),
            "untouched fields keep the default"
        );
        assert_eq!(c.step.max_tokens, 40);
        assert_eq!(c.step.sampling.temperature, 0.5);
        assert_eq!(c.step.sampling.seed, 7);
        // A whole config with its own type wins over the prefix.
        let mut r = user("plain-model");
        r["ponder"] = json!({"type": "beam", "width": 2});
        let p = plan(&request(r), &o).unwrap();
        assert_eq!(p.label(), "beam");
    }

    #[test]
    fn plain_generation_takes_n_stop_and_sampling() {
        let o = ServeOptions::default();
        let mut r = user("smol");
        r["n"] = json!(4);
        r["top_p"] = json!(0.9);
        r["max_completion_tokens"] = json!(12);
        r["stop"] = json!("\n");
        r["messages"] = json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "What is 2+3?"},
        ]);
        let j = job(plan(&request(r), &o).unwrap());
        assert_eq!(
            (j.n, j.best_of, j.max_tokens, j.sampling.top_p),
            (4, 4, 12, 0.9)
        );
        assert_eq!(
            j.prompts,
            [plain::PlainPrompt::Chat(vec![
                crate::Message::system("Be brief."),
                crate::Message::user("User: Hi\n\nAssistant: Hello!\n\nUser: What is 2+3?"),
            ])]
        );
        assert_eq!(j.stop, vec!["\n".to_string()]);
        assert_eq!(j.logprobs, None);
        // logprobs and top_logprobs; top_p 0 is greedy.
        let mut r = user("smol");
        r["logprobs"] = json!(true);
        r["top_logprobs"] = json!(3);
        r["top_p"] = json!(0);
        let j = job(plan(&request(r), &o).unwrap());
        assert_eq!(j.logprobs, Some(3));
        assert_eq!(j.sampling.temperature, 0.0);
        let mut r = user("smol");
        r["logprobs"] = json!(true);
        assert_eq!(job(plan(&request(r), &o).unwrap()).logprobs, Some(0));
    }

    #[test]
    fn completions_plan_raw_prompts_best_of_echo_and_searches() {
        let o = ServeOptions::default();
        let req = |v: Value| -> openai::CompletionRequest { serde_json::from_value(v).unwrap() };
        let j = job(plan_completion(&req(json!({"model": "m", "prompt": ["a", "b"], "n": 2, "best_of": 3, "logprobs": 2, "echo": true})), &o).unwrap());
        assert_eq!(
            j.prompts,
            [
                plain::PlainPrompt::Text("a".into()),
                plain::PlainPrompt::Text("b".into())
            ]
        );
        assert_eq!(
            (j.n, j.best_of, j.max_tokens, j.logprobs, j.echo),
            (2, 3, 16, Some(2), true)
        );
        let j = job(plan_completion(
            &req(json!({"prompt": [[1, 2], [3]], "max_tokens": 0, "echo": true})),
            &o,
        )
        .unwrap());
        assert_eq!(
            j.prompts,
            [
                plain::PlainPrompt::Tokens(vec![1, 2]),
                plain::PlainPrompt::Tokens(vec![3])
            ]
        );
        let p = plan_completion(
            &req(json!({"model": "bon-m", "prompt": "What is 2+3?", "ponder": {"n": 2}})),
            &o,
        )
        .unwrap();
        assert_eq!(p.label(), "best_of_n");
        let param = |v: Value| plan_completion(&req(v), &o).unwrap_err().param.unwrap();
        assert_eq!(param(json!({"model": "m"})), "prompt");
        assert_eq!(param(json!({"prompt": []})), "prompt");
        assert_eq!(param(json!({"prompt": ""})), "prompt");
        assert_eq!(param(json!({"prompt": "a", "max_tokens": 0})), "max_tokens");
        assert_eq!(
            param(json!({"prompt": "a", "n": 3, "best_of": 2})),
            "best_of"
        );
        assert_eq!(param(json!({"prompt": "a", "logprobs": 21})), "logprobs");
        assert_eq!(param(json!({"prompt": "a", "best_of": 17})), "best_of");
        assert_eq!(param(json!({"prompt": vec!["a"; 9], "n": 2})), "prompt");
        assert_eq!(
            param(json!({"model": "bon-m", "prompt": "a", "logprobs": 1})),
            "logprobs"
        );
        assert_eq!(
            param(json!({"model": "bon-m", "prompt": "a", "echo": true})),
            "echo"
        );
        assert_eq!(
            param(json!({"model": "bon-m", "prompt": ["a", "b"]})),
            "prompt"
        );
        assert_eq!(
            param(json!({"prompt": "a", "temperature": 3})),
            "temperature"
        );
        assert_eq!(
            param(json!({"prompt": "a", "presence_penalty": 1})),
            "presence_penalty"
        );
    }

    #[test]
    fn bad_requests_name_the_field() {
        let o = ServeOptions {
            max_n: 8,
            max_tokens: 400,
            ..ServeOptions::default()
        };
        let param = |r: Value| plan(&request(r), &o).unwrap_err().param.unwrap();
        let mut r = user("smol");
        r["n"] = json!(9);
        assert_eq!(param(r), "n");
        let mut r = user("smol");
        r["max_tokens"] = json!(401);
        assert_eq!(param(r), "max_tokens");
        let mut r = user("bon-x");
        r["n"] = json!(2);
        assert_eq!(param(r), "n");
        let mut r = user("x");
        r["ponder"] = json!({"type": "magic"});
        assert_eq!(param(r), "ponder.type");
        let mut r = user("x");
        r["ponder"] = json!({"n": 2});
        assert_eq!(param(r), "ponder.type");
        let mut r = user("bon-x");
        r["ponder"] = json!({"n": 9});
        assert_eq!(param(r), "ponder.n");
        let mut r = user("mcts-x");
        r["ponder"] = json!({"budget": {"tokens": 1_000_000}});
        assert_eq!(param(r), "ponder.budget.tokens");
        let mut r = user("bon-x");
        r["ponder"] = json!({"nonsense": 1});
        assert_eq!(param(r), "ponder");
        let mut r = user("x");
        r["messages"] = json!([]);
        assert_eq!(param(r), "messages");
        let mut r = user("x");
        r["messages"] = json!([{"role": "assistant", "content": "hi"}]);
        assert_eq!(param(r), "messages");
        // OpenAI's ranges.
        for (field, value) in [
            ("temperature", json!(2.5)),
            ("temperature", json!(-1)),
            ("top_p", json!(1.1)),
            ("n", json!(0)),
            ("max_tokens", json!(0)),
            ("max_completion_tokens", json!(0)),
            ("presence_penalty", json!(-3)),
            ("frequency_penalty", json!(0.5)),
            ("top_logprobs", json!(21)),
        ] {
            let mut r = user("x");
            r[field] = value;
            r["logprobs"] = json!(true);
            assert_eq!(param(r), field);
        }
        let mut r = user("x");
        r["top_logprobs"] = json!(2);
        assert_eq!(param(r), "top_logprobs", "top_logprobs needs logprobs");
        let mut r = user("x");
        r["stop"] = json!(["a", "b", "c", "d", "e"]);
        assert_eq!(param(r), "stop");
        let mut r = user("mcts-x");
        r["logprobs"] = json!(true);
        assert_eq!(param(r), "logprobs");
        let mut r = user("x");
        r["max_tokens"] = json!(10);
        r["max_completion_tokens"] = json!(401);
        assert_eq!(param(r), "max_completion_tokens");
    }
}
