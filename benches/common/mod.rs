//! Shared bench set-up: the default model, loaded once.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use ponder::lm::{Model, ModelOptions};

pub fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = std::env::var_os("PONDER_MODEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(ponder::lm::DEFAULT_MODEL_PATH)
            });
        Model::load(&ModelOptions {
            path,
            ..ModelOptions::default()
        })
        .unwrap_or_else(|e| panic!("benches need the default model: {e}"))
    })
}

/// A prompt of exactly `n` tokens (for a model whose vocabulary has plain word tokens).
pub fn prompt_tokens(lm: &impl ponder::Lm, n: usize) -> Vec<i32> {
    let text =
        "The quick brown fox jumps over the lazy dog while the farmer counts his sheep. ".repeat(n);
    let mut tokens = lm.tokenize(&text).expect("tokenize");
    tokens.truncate(n);
    assert_eq!(tokens.len(), n);
    tokens
}
