//! The llama.cpp `Lm` on the real default model: determinism, shared prefill, lockstep batching,
//! parking, release, scoring consistency, and typed errors.

mod common;

use common::{model, session};
use ponder::lm::llama::ReferenceDecode;
use ponder::lm::{
    ContextOptions, FinishReason, GenRequest, KvLayout, LlamaLm, Lm, Message, Model, ModelOptions,
    SamplingParams,
};
use ponder::{DecodeError, Error, LoadError};

const QUESTION: &str = "Tom has 3 apples and buys 5 more. How many apples does he have?";

fn request(parent: ponder::Node, seed: u64, max_tokens: u32) -> GenRequest {
    GenRequest {
        parent,
        sampling: SamplingParams {
            temperature: 1.0,
            ..SamplingParams::default()
        }
        .with_seed(seed),
        stop: Vec::new(),
        max_tokens,
        ignore_eos: false,
        confidence_stop: None,
    }
}

fn full_vocab(lm: &impl Lm) -> Vec<i32> {
    (0..lm.vocab_size() as i32).collect()
}

/// The number of distinct token prefixes over the given generations' nodes: the size of the
/// token trie they form, which is what must be decoded once each.
fn distinct_prefixes(lm: &impl Lm, nodes: impl IntoIterator<Item = ponder::Node>) -> usize {
    let mut seen = std::collections::HashSet::new();
    for node in nodes {
        let tokens = lm.node_tokens(node).unwrap();
        for end in 1..=tokens.len() {
            seen.insert(tokens[..end].to_vec());
        }
    }
    seen.len()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn same_request_same_seed_gives_the_same_text() {
    let mut lm = session(2048, 8);
    let root = lm.root(&[Message::user(QUESTION)]).unwrap();
    let first = lm.generate(&[request(root, 42, 48)]).unwrap().remove(0);
    // Same request on the same cache state. (While `first` is still live its cells sit in the
    // attention window, which changes llama.cpp's summation order and can change the text; see
    // the README on determinism.)
    lm.release(first.node);
    let again = lm.generate(&[request(root, 42, 48)]).unwrap().remove(0);
    assert!(first.tokens > 0);
    assert_eq!(first.text, again.text);
    assert_eq!(first.tokens, again.tokens);
    assert!((first.logprob - again.logprob).abs() < 1e-3);

    // A fresh context, same request: same text.
    let mut other = session(2048, 8);
    let root2 = other.root(&[Message::user(QUESTION)]).unwrap();
    let fresh = other.generate(&[request(root2, 42, 48)]).unwrap().remove(0);
    assert_eq!(first.text, fresh.text);

    // Other seeds explore: among several, at least one differs.
    let others = lm
        .generate(&(43..47).map(|s| request(root, s, 48)).collect::<Vec<_>>())
        .unwrap();
    assert!(others.iter().any(|g| g.text != first.text));
}

#[test]
fn a_context_keeps_its_model_alive_when_every_model_handle_is_gone() {
    let model = Model::load(&ModelOptions {
        path: common::model_path(),
        ..ModelOptions::default()
    })
    .unwrap();
    let options = ContextOptions {
        n_ctx: 256,
        n_seq_max: 2,
        n_threads: 1,
        ..ContextOptions::default()
    };
    let prompt = model
        .session(&options)
        .unwrap()
        .tokenize("The quick brown fox")
        .unwrap();
    let mut reference = ReferenceDecode::new(&model, &options).unwrap();
    drop(model);
    // The plain llama.cpp loop's context now holds the only share of the weights.
    let sampling = SamplingParams::default();
    reference.run(&prompt, 2, 4, &sampling).unwrap();
    assert!(matches!(
        reference.run(&prompt, 3, 4, &sampling),
        Err(DecodeError::Llama { .. })
    ));
    assert!(reference.run(&[], 1, 4, &sampling).is_err());
}

#[test]
fn generate_n8_prefills_the_prompt_once_and_decodes_in_lockstep() {
    let mut lm = session(2048, 16);
    let root = lm.root(&[Message::user(QUESTION)]).unwrap();
    let prompt_len = lm.node_len(root).unwrap() as u64;
    let gens = lm
        .generate(&(0..8).map(|s| request(root, s, 40)).collect::<Vec<_>>())
        .unwrap();
    assert_eq!(gens.len(), 8);
    let u = lm.usage();
    assert_eq!(u.prompt_tokens, prompt_len);
    assert_eq!(
        u.prefill_tokens, prompt_len,
        "the prompt is prefilled once, not 8 times"
    );
    let generated: u64 = gens.iter().map(|g| u64::from(g.tokens)).sum();
    assert_eq!(u.generated_tokens, generated);
    // Branches that sampled identical tokens share them, so at most one decode per token.
    assert!(u.decoded_tokens <= generated);
    assert_eq!(
        u.decoded_tokens as usize,
        distinct_prefixes(&lm, gens.iter().map(|g| g.node)) - prompt_len as usize
    );
    assert_eq!(u.recomputed_tokens, 0);
    // The cells in use count the shared prompt once (the 8 sequences hold 8 copies of it).
    assert_eq!(
        lm.kv_cells_used(),
        distinct_prefixes(&lm, gens.iter().map(|g| g.node))
    );
    // One pass for the prompt, then one pass per step for all live branches together.
    let longest = gens.iter().map(|g| u64::from(g.tokens)).max().unwrap();
    assert_eq!(u.forward_passes, 1 + longest);
    for g in &gens {
        assert!(g.tokens <= 40);
        assert!(g.logprob < 0.0);
        assert_eq!(
            lm.node_len(g.node).unwrap() as u64,
            prompt_len + u64::from(g.tokens)
        );
    }
}

#[test]
fn a_tree_that_never_parks_decodes_every_token_once() {
    let mut lm = session(4096, 32);
    let root = lm.root(&[Message::user(QUESTION)]).unwrap();
    let level1 = lm
        .generate(&(0..3).map(|s| request(root, s, 12)).collect::<Vec<_>>())
        .unwrap();
    let mut requests = Vec::new();
    let mut nudged_nodes = Vec::new();
    for g in &level1 {
        let nudged = lm.extend(g.node, " Let me check.").unwrap();
        nudged_nodes.push(nudged);
        requests.push(request(nudged, 7, 10));
        requests.push(request(nudged, 8, 10));
    }
    let level2 = lm.generate(&requests).unwrap();
    let tree = distinct_prefixes(
        &lm,
        level1
            .iter()
            .chain(&level2)
            .map(|g| g.node)
            .chain(nudged_nodes),
    );
    let u = lm.usage();
    assert_eq!(u.parked, 0);
    assert_eq!(u.recomputed_tokens, 0);
    assert_eq!(
        (u.prefill_tokens + u.decoded_tokens) as usize,
        tree,
        "every distinct token of the tree is decoded exactly once: {u:?}"
    );
    // Every node still holds its sequence: the cells in use are the tree's.
    assert_eq!(lm.kv_cells_used(), tree);
}

#[test]
fn more_branches_than_sequences_park_and_reactivate_exactly() {
    let n_seq_max = 4;
    let mut lm = session(4096, n_seq_max);
    let root = lm.root(&[Message::user(QUESTION)]).unwrap();
    let vocab = full_vocab(&lm);

    // 12 branches, three levels deep, with only 4 sequences.
    let mut frontier = vec![root; 12];
    let mut levels = Vec::new();
    for level in 0..3u64 {
        let requests: Vec<GenRequest> = frontier
            .iter()
            .enumerate()
            .map(|(i, &n)| request(n, level * 100 + i as u64, 8))
            .collect();
        let gens = lm.generate(&requests).unwrap();
        assert_eq!(gens.len(), 12);
        frontier = gens.iter().map(|g| g.node).collect();
        levels.push(gens);
        assert!(lm.live_sequences() <= n_seq_max as usize);
    }
    let u = lm.usage();
    assert!(u.parked > 0, "12 branches on 4 sequences must park: {u:?}");

    // A leaf's next-token distribution, before and after parking it.
    let leaf = levels[2][0].node;
    let before = lm.next_token_probs(&[(leaf, &vocab)]).unwrap().remove(0);
    assert!((before.iter().sum::<f32>() - 1.0).abs() < 1e-3);
    // Use every other leaf, which pushes this one out of its sequence.
    let others: Vec<(ponder::Node, &[i32])> = levels[2][1..]
        .iter()
        .map(|g| (g.node, &vocab[..1]))
        .collect();
    lm.next_token_probs(&others).unwrap();
    assert!(
        !lm.is_attached(leaf).unwrap(),
        "the leaf should have been parked"
    );
    let parked_usage = lm.usage();
    let after = lm.next_token_probs(&[(leaf, &vocab)]).unwrap().remove(0);
    let diff = max_abs_diff(&before, &after);
    assert!(
        diff < 1e-3,
        "probabilities changed by {diff} across parking"
    );
    let u = lm.usage();
    assert!(u.reactivated > parked_usage.reactivated, "{u:?}");
    assert!(
        u.recomputed_tokens > parked_usage.recomputed_tokens,
        "re-activation costs tokens and usage shows them: {u:?}"
    );
}

#[test]
fn releasing_nodes_frees_their_sequences_and_cells() {
    // A small cache: leaked sequences or cells would run out long before 400 rounds.
    let mut lm = session(128, 4);
    let root = lm.root(&[Message::user("Count with me.")]).unwrap();
    for i in 0..400 {
        let child = lm.extend(root, &format!(" {i} and")).unwrap();
        let probs = lm.next_token_probs(&[(child, &[0, 1])]).unwrap();
        assert_eq!(probs[0].len(), 2);
        let gens = lm.generate(&[request(child, i, 4)]).unwrap();
        lm.release(gens[0].node);
        lm.release(child);
        assert!(
            lm.live_sequences() <= 1,
            "round {i}: {}",
            lm.live_sequences()
        );
    }
    assert_eq!(lm.node_count(), 1);
    assert_eq!(
        lm.usage().parked,
        0,
        "release, not parking, must free the sequences"
    );
    // A released handle is rejected, not confused with a newer node.
    let child = lm.extend(root, " x").unwrap();
    lm.release(child);
    let fresh = lm.extend(root, " y").unwrap();
    assert!(matches!(
        lm.next_token_probs(&[(child, &[0])]),
        Err(DecodeError::UnknownNode { .. })
    ));
    assert!(lm.next_token_probs(&[(fresh, &[0])]).is_ok());
}

#[test]
fn forced_logprobs_agree_with_next_token_probs_and_with_sampling() {
    let mut lm = session(2048, 8);
    let root = lm.root(&[Message::user(QUESTION)]).unwrap();
    let text = "He has 8 apples.";
    let tokens = lm.tokenize(text).unwrap();
    let lps = lm.forced_logprobs(&[(root, text)]).unwrap().remove(0);
    assert_eq!(lps.len(), tokens.len());
    assert!(lps.iter().all(|&l| l <= 0.0 && l.is_finite()));
    let p_first = lm.next_token_probs(&[(root, &tokens[..1])]).unwrap()[0][0];
    assert!((p_first.ln() - lps[0]).abs() < 1e-3);
    // The second token's logprob equals what the extended node predicts.
    let one = lm.extend_tokens(root, &tokens[..1]).unwrap();
    let p_second = lm.next_token_probs(&[(one, &tokens[1..2])]).unwrap()[0][0];
    assert!(
        (p_second.ln() - lps[1]).abs() < 1e-3,
        "{} vs {}",
        p_second.ln(),
        lps[1]
    );

    // A greedy generation's summed logprob equals forcing its own tokens.
    let g = lm
        .generate(&[GenRequest {
            sampling: SamplingParams::greedy(),
            ..request(root, 0, 12)
        }])
        .unwrap()
        .remove(0);
    let forced: f64 = lm.forced_logprobs(&[(root, &g.text)]).unwrap()[0]
        .iter()
        .map(|&l| f64::from(l))
        .sum();
    if lm.tokenize(&g.text).unwrap().len() == g.tokens as usize {
        // One token per pass versus all in one pass: llama.cpp's CPU kernels round differently
        // (see the README on determinism); an off-by-one position would be off by nats.
        assert!(
            (forced - g.logprob).abs() / f64::from(g.tokens) < 0.1,
            "{forced} vs {}",
            g.logprob
        );
    }
}

#[test]
fn stop_strings_and_max_tokens_end_generation() {
    let mut lm = session(2048, 8);
    let root = lm
        .root(&[Message::user(
            "List the numbers from 1 to 20, one per line.",
        )])
        .unwrap();
    let mut r = request(root, 1, 64);
    r.sampling = SamplingParams::greedy();
    r.stop = vec!["\n".into()];
    let g = lm.generate(&[r]).unwrap().remove(0);
    assert_eq!(g.finish, FinishReason::Stop(0), "{:?}", g.text);
    assert!(g.text.ends_with('\n') || g.text.contains('\n'));
    assert_eq!(g.text.matches('\n').count(), 1, "{:?}", g.text);

    let mut r = request(root, 1, 3);
    r.ignore_eos = true;
    let g = lm.generate(&[r]).unwrap().remove(0);
    assert_eq!(g.tokens, 3);
    assert_eq!(g.finish, FinishReason::MaxTokens);
}

#[test]
fn a_branch_stops_at_the_end_of_the_context() {
    let mut lm = session(64, 2);
    let root = lm.root(&[Message::user("Write a long story.")]).unwrap();
    let len = lm.node_len(root).unwrap() as u32;
    let mut r = request(root, 3, 500);
    r.ignore_eos = true;
    let g = lm.generate(&[r]).unwrap().remove(0);
    assert_eq!(g.finish, FinishReason::ContextFull);
    assert_eq!(len + g.tokens, 64);
}

#[test]
fn invalid_requests_are_typed_errors_before_any_work() {
    let mut lm = session(256, 4);
    let root = lm.root(&[Message::user("Hi")]).unwrap();
    let field = |r: Result<Vec<ponder::Generation>, DecodeError>| match r {
        Err(DecodeError::InvalidRequest { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    };
    let mut r = request(root, 0, 0);
    assert_eq!(field(lm.generate(&[r.clone()])), "max_tokens");
    r.max_tokens = 4;
    r.sampling.temperature = -0.5;
    assert_eq!(field(lm.generate(&[r.clone()])), "temperature");
    r.sampling.temperature = 0.7;
    for bad in [0.0, 1.5, f32::NAN] {
        r.sampling.top_p = bad;
        assert_eq!(field(lm.generate(&[r.clone()])), "top_p");
    }
    r.sampling.top_p = 0.9;
    r.sampling.min_p = 1.0;
    assert_eq!(field(lm.generate(&[r.clone()])), "min_p");
    assert_eq!(
        lm.usage().forward_passes,
        0,
        "nothing ran for invalid requests"
    );
    let msg = lm.generate(&[request(root, 0, 0)]).unwrap_err().to_string();
    assert!(
        msg.contains("max_tokens") && msg.contains("at least 1"),
        "{msg}"
    );

    let err = lm.next_token_probs(&[(root, &[-1])]).unwrap_err();
    assert!(matches!(err, DecodeError::InvalidRequest { .. }), "{err}");
}

#[test]
fn a_prompt_longer_than_the_context_is_a_typed_error() {
    let mut lm = session(64, 2);
    let long = "apples and oranges ".repeat(100);
    let err = lm.root(&[Message::user(long.clone())]).unwrap_err();
    match &err {
        DecodeError::ContextOverflow { tokens, n_ctx, .. } => {
            assert_eq!(*n_ctx, 64);
            assert!(*tokens > 64);
        }
        other => panic!("expected ContextOverflow, got {other:?}"),
    }
    assert!(err.to_string().contains("raise the context size"), "{err}");
    let root = lm.root(&[Message::user("Hi")]).unwrap();
    assert!(matches!(
        lm.extend(root, &long),
        Err(DecodeError::ContextOverflow { .. })
    ));
    assert!(matches!(
        lm.forced_logprobs(&[(root, &long)]),
        Err(DecodeError::ContextOverflow { .. })
    ));
}

#[test]
fn missing_and_non_gguf_model_files_are_typed_errors() {
    let dir = std::env::temp_dir().join(format!("ponder-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let load = |path: std::path::PathBuf| {
        Model::load(&ModelOptions {
            path,
            n_gpu_layers: 0,
        })
    };

    let err = load(dir.join("missing.gguf")).unwrap_err();
    assert!(matches!(err, LoadError::ModelNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("make model"), "{err}");

    let text = dir.join("notes.gguf");
    std::fs::write(&text, "these are not weights").unwrap();
    let err = load(text).unwrap_err();
    assert!(matches!(err, LoadError::NotGguf { .. }), "{err:?}");

    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(
        load(empty).unwrap_err(),
        LoadError::NotGguf { .. }
    ));

    // A real GGUF header with the rest cut off: llama.cpp rejects it, we report it.
    let real = std::fs::read(common::model_path()).unwrap();
    let truncated = dir.join("truncated.gguf");
    std::fs::write(&truncated, &real[..real.len() / 3]).unwrap();
    let err = load(truncated).unwrap_err();
    assert!(matches!(err, LoadError::Model { .. }), "{err:?}");

    let err = load(dir.clone()).unwrap_err();
    assert!(matches!(err, LoadError::NotGguf { .. }), "{err:?}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn invalid_context_options_are_typed_errors() {
    for (opts, field) in [
        (
            ContextOptions {
                n_seq_max: 257,
                ..ContextOptions::default()
            },
            "n_seq_max",
        ),
        (
            ContextOptions {
                n_ctx: 4,
                ..ContextOptions::default()
            },
            "n_ctx",
        ),
        // Streams: fewer cells than sequences leaves some sequence no stream.
        (
            ContextOptions {
                kv_layout: KvLayout::Streams,
                n_ctx: 8,
                n_seq_max: 16,
                ..ContextOptions::default()
            },
            "n_ctx",
        ),
        (
            ContextOptions {
                kv_layout: KvLayout::Streams,
                n_seq_max: 256,
                n_ctx: 1 << 20,
                max_seqs_per_solve: 257,
                ..ContextOptions::default()
            },
            "max_seqs_per_solve",
        ),
    ] {
        match model().session(&opts) {
            Err(Error::Config(e)) => assert_eq!(e.field, field),
            other => panic!("expected a config error for {field}, got {other:?}"),
        }
    }
}

fn layout_session(kv_layout: KvLayout, n_ctx: u32, n_seq_max: u32) -> LlamaLm {
    model()
        .session(&ContextOptions {
            kv_layout,
            n_ctx,
            n_seq_max,
            ..ContextOptions::default()
        })
        .expect("context")
}

fn greedy(parent: ponder::Node, max_tokens: u32) -> GenRequest {
    GenRequest {
        sampling: SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        },
        ignore_eos: true,
        ..request(parent, 0, max_tokens)
    }
}

/// Forking a node (a cell share in `unified`, a whole-stream copy cut back to the fork point in
/// `streams`) must leave the branch exactly the cache a fresh prefill of its prefix gives: the
/// same greedy continuation at every depth, whether the forks run one at a time or all in one
/// batch (in `streams` the batch also moves sequences next to each other: more copies).
#[test]
fn forks_at_every_depth_continue_as_a_fresh_prefill_in_both_layouts() {
    const CHAIN: usize = 24;
    const NEXT: u32 = 4;
    for layout in [KvLayout::Unified, KvLayout::Streams] {
        let mut lm = layout_session(layout, 16 * 512, 16);
        assert_eq!(lm.sizing().layout, layout);
        let root = lm.root(&[Message::user(QUESTION)]).unwrap();
        let prompt = lm.node_tokens(root).unwrap();
        let chain = lm
            .generate(&[greedy(root, CHAIN as u32)])
            .unwrap()
            .remove(0);
        let tokens = lm.node_tokens(chain.node).unwrap();
        assert_eq!(tokens.len(), prompt.len() + CHAIN);
        let depths: Vec<usize> = (0..=CHAIN).step_by(3).map(|d| prompt.len() + d).collect();

        // Fresh prefills of each prefix, each in a context of its own.
        let fresh: Vec<Vec<i32>> = depths
            .iter()
            .map(|&d| {
                let mut f = layout_session(layout, 16 * 512, 16);
                let r = f.root_tokens(&tokens[..d]).unwrap();
                let g = f.generate(&[greedy(r, NEXT)]).unwrap().remove(0);
                f.node_tokens(g.node).unwrap()[d..].to_vec()
            })
            .collect();

        // One fork at a time, from the live chain.
        for (&d, want) in depths.iter().zip(&fresh) {
            let node = lm.extend_tokens(root, &tokens[prompt.len()..d]).unwrap();
            let g = lm.generate(&[greedy(node, NEXT)]).unwrap().remove(0);
            let got = lm.node_tokens(g.node).unwrap()[d..].to_vec();
            assert_eq!(&got, want, "{layout:?}: fork at depth {d} one at a time");
            lm.release(g.node);
            lm.release(node);
        }

        // Every depth in one batch.
        let nodes: Vec<ponder::Node> = depths
            .iter()
            .map(|&d| lm.extend_tokens(root, &tokens[prompt.len()..d]).unwrap())
            .collect();
        let before = lm.usage();
        let gens = lm
            .generate(&nodes.iter().map(|&n| greedy(n, NEXT)).collect::<Vec<_>>())
            .unwrap();
        for ((g, &d), want) in gens.iter().zip(&depths).zip(&fresh) {
            let got = lm.node_tokens(g.node).unwrap()[d..].to_vec();
            assert_eq!(&got, want, "{layout:?}: fork at depth {d} in one batch");
        }
        let used = lm.usage().since(&before);
        match layout {
            KvLayout::Streams => assert!(
                used.kv_copies > 0 && used.kv_copy_bytes > 0,
                "{used:?} {:?}",
                lm.usage()
            ),
            _ => assert_eq!((used.kv_copies, used.kv_copy_bytes), (0, 0)),
        }
    }
}

#[test]
fn outgrowing_a_stream_is_a_typed_error_and_a_generation_stops_at_its_end() {
    // 512 cells for 2 sequences: a stream of 256 each.
    let mut lm = layout_session(KvLayout::Streams, 512, 2);
    let s = lm.sizing();
    assert_eq!((s.cells_per_seq, s.n_ctx, s.n_seq_max), (256, 512, 2));
    let long = "apples and oranges ".repeat(100);
    let err = lm.root(&[Message::user(long.clone())]).unwrap_err();
    match &err {
        DecodeError::StreamOverflow {
            tokens,
            cells_per_seq,
            n_ctx,
            n_seq_max,
            ..
        } => {
            assert!(*tokens > 256 && *tokens < 512, "{tokens}");
            assert_eq!((*cells_per_seq, *n_ctx, *n_seq_max), (256, 512, 2));
        }
        other => panic!("expected StreamOverflow, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("256") && msg.contains("--kv-layout unified") && msg.contains("--ctx"),
        "{msg}"
    );
    let root = lm.root(&[Message::user("Write a long story.")]).unwrap();
    assert!(matches!(
        lm.extend(root, &long),
        Err(DecodeError::StreamOverflow { .. })
    ));
    assert!(matches!(
        lm.forced_logprobs(&[(root, &long)]),
        Err(DecodeError::StreamOverflow { .. })
    ));
    // Two branches fill their streams; the context goes on working afterwards.
    let len = lm.node_len(root).unwrap() as u32;
    let mut r = request(root, 3, 1000);
    r.ignore_eos = true;
    let gens = lm.generate(&[r.clone(), request(root, 4, 1000)]).unwrap();
    assert_eq!(gens[0].finish, FinishReason::ContextFull);
    assert_eq!(len + gens[0].tokens, 256);
    for g in gens {
        lm.release(g.node);
    }
    let again = lm.generate(&[request(root, 5, 8)]).unwrap().remove(0);
    assert!(again.tokens > 0);
    // The same text fits a unified pool of the same size.
    let mut pooled = layout_session(KvLayout::Unified, 512, 2);
    assert!(pooled.root(&[Message::user(long)]).is_ok());
}

#[test]
fn auto_picks_streams_unless_the_sizes_ask_for_a_shared_pool() {
    let auto = |n_ctx, n_seq_max| {
        ContextOptions {
            n_ctx,
            n_seq_max,
            ..ContextOptions::default()
        }
        .sizing()
    };
    let s = auto(0, 0);
    assert_eq!(
        (s.layout, s.n_seq_max, s.cells_per_seq, s.n_ctx),
        (KvLayout::Streams, 16, 2048, 32768)
    );
    assert_eq!(auto(4096, 0).layout, KvLayout::Unified);
    assert_eq!(auto(4096, 64).layout, KvLayout::Unified);
    let s = auto(8192, 8);
    assert_eq!((s.layout, s.cells_per_seq), (KvLayout::Streams, 1024));
    // llama.cpp rounds a stream up to a multiple of 256 cells; the sizing says so.
    let s = ContextOptions {
        kv_layout: KvLayout::Streams,
        n_ctx: 1000,
        n_seq_max: 2,
        ..ContextOptions::default()
    };
    let lm = model().session(&s).unwrap();
    assert_eq!((lm.sizing().cells_per_seq, lm.n_ctx()), (512, 1024));
}

#[test]
fn a_prefix_shared_by_new_nodes_is_decoded_once_in_one_pass() {
    let mut lm = session(4096, 16);
    let root = lm.root(&[Message::user(QUESTION)]).unwrap();
    let shared = lm
        .extend(root, "Here is a proposed solution. Check it carefully.\n")
        .unwrap();
    let endings = [
        "He has 8 apples.",
        "He has 9 apples.",
        "3 + 5 = 8, so 8.",
        "He has 15 apples.",
    ];
    let nodes: Vec<ponder::Node> = endings
        .iter()
        .map(|e| lm.extend(shared, e).unwrap())
        .collect();
    let yes = lm.tokenize(" Yes").unwrap();
    let queries: Vec<(ponder::Node, &[i32])> = nodes.iter().map(|&n| (n, &yes[..])).collect();
    let batched = lm.next_token_probs(&queries).unwrap();
    let u = lm.usage();
    // The root, the shared part, and each ending's tokens after the longest prefix it shares
    // with another ending: the size of their token trie.
    let distinct = distinct_prefixes(&lm, nodes.iter().copied());
    assert!(distinct < lm.node_len(shared).unwrap() * 2);
    assert_eq!(u.prefill_tokens as usize, distinct, "{u:?}");
    assert_eq!(u.forward_passes, 1);

    // One at a time, in a fresh context, gives the same probabilities.
    let mut alone = session(4096, 16);
    let root = alone.root(&[Message::user(QUESTION)]).unwrap();
    let shared = alone
        .extend(root, "Here is a proposed solution. Check it carefully.\n")
        .unwrap();
    for (e, b) in endings.iter().zip(&batched) {
        let n = alone.extend(shared, e).unwrap();
        let p = alone.next_token_probs(&[(n, &yes[..])]).unwrap();
        assert!((p[0][0] - b[0]).abs() < 1e-3, "{} vs {}", p[0][0], b[0]);
        alone.release(n);
    }
}
