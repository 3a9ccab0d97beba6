//! [`ClientTokenizer`]: a Hugging Face `tokenizer.json` that tokenises on the client what the
//! remote backend would otherwise send to the server's `/tokenize`, and the probe strings that
//! check, at connect time, that it tokenises exactly as the server does.

use std::path::{Path, PathBuf};

use super::TokenId;
use crate::error::TokenizerError;

/// A loaded `tokenizer.json`. Thread rules: `Send + Sync`, shared by every solve of a connection.
pub(crate) struct ClientTokenizer {
    path: PathBuf,
    inner: tokenizers::Tokenizer,
}

impl std::fmt::Debug for ClientTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTokenizer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl ClientTokenizer {
    /// Reads and parses `path`.
    ///
    /// # Errors
    /// [`TokenizerError::NotFound`] when there is no such file; [`TokenizerError::Unreadable`]
    /// when it cannot be read or is not a tokenizer.json.
    pub(crate) fn load(path: &Path) -> Result<Self, TokenizerError> {
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => TokenizerError::NotFound {
                path: path.to_path_buf(),
            },
            _ => TokenizerError::Unreadable {
                path: path.to_path_buf(),
                reason: format!("cannot read it: {e}"),
            },
        })?;
        let inner =
            tokenizers::Tokenizer::from_bytes(&bytes).map_err(|e| TokenizerError::Unreadable {
                path: path.to_path_buf(),
                reason: format!("it is not a Hugging Face tokenizer.json ({e})"),
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            inner,
        })
    }

    /// The file it was loaded from.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The tokens of `text`: special tokens written in the text are parsed as such (llama-server's
    /// `parse_special`), and `add_special` adds what the model adds to a whole prompt (BOS/EOS,
    /// from the file's post-processor), as `/tokenize` with `add_special` does.
    ///
    /// # Errors
    /// [`TokenizerError::Failed`] if the tokenizer fails on `text`.
    pub(crate) fn encode(
        &self,
        text: &str,
        add_special: bool,
    ) -> Result<Vec<TokenId>, TokenizerError> {
        let encoding =
            self.inner
                .encode_fast(text, add_special)
                .map_err(|e| TokenizerError::Failed {
                    path: self.path.clone(),
                    message: e.to_string(),
                })?;
        Ok(encoding.get_ids().iter().map(|&t| t as TokenId).collect())
    }
}

/// Strings tokenised both on the client and by the server at connect time: each pre-tokenizer
/// rule (contractions, letters, digit runs, punctuation, whitespace runs and line breaks), text
/// outside ASCII, emoji with joiners and modifiers, and the special tokens of common chat
/// templates (the server's own rendering of a chat is probed as well).
pub(crate) const PROBES: &[&str] = &[
    "The answer is 42.",
    "Tom has 3 boxes with 4 apples in each box. He eats 2 apples. How many are left?",
    "12345 + 678 = 13023; 3.14159, -0.5e-9, 0x1F, 1,000,000",
    "don't we'll I'M they've She'd it's",
    "  two leading spaces, trailing   ",
    "a\n\nb\n\n\nc\r\nd\t\te  \n  f",
    "    def f(x):\n        return x * 2\n",
    "$$\\boxed{17}$$ #### 17 (a) [b] {c} <d> | e_f ~g",
    "naïve café Ünïcødé — “quotes” … ½ °C",
    "日本語のテキスト, Привет мир, مرحبا, नमस्ते",
    "emoji 😀 👍🏽 👨‍👩‍👧 🇫🇷",
    "\u{a0}no-break\u{3000}ideographic\u{2028}line",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "<s>[INST] x [/INST]</s><start_of_turn>user\nx<end_of_turn>\n<|endoftext|><|eot_id|>",
];

/// The first position where `a` and `b` differ (the shorter one's length when one is a prefix
/// of the other), or `None` when they are equal.
pub(crate) fn first_difference(a: &[TokenId], b: &[TokenId]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_located() {
        assert_eq!(first_difference(&[1, 2, 3], &[1, 2, 3]), None);
        assert_eq!(first_difference(&[1, 2, 3], &[1, 5, 3]), Some(1));
        assert_eq!(first_difference(&[1, 2], &[1, 2, 3]), Some(2));
        assert_eq!(first_difference(&[], &[7]), Some(0));
    }

    #[test]
    fn a_missing_or_broken_file_is_a_typed_error_that_says_what_to_do() {
        let missing = ClientTokenizer::load(Path::new("/nonexistent/tokenizer.json")).unwrap_err();
        assert!(
            matches!(&missing, TokenizerError::NotFound { path } if path.ends_with("tokenizer.json")),
            "{missing:?}"
        );
        assert!(
            missing.to_string().contains("export-tokenizer.py"),
            "{missing}"
        );
        let dir = std::env::temp_dir().join(format!("ponder-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let broken = dir.join("tokenizer.json");
        std::fs::write(&broken, "{\"model\": {\"type\": \"BPE\", \"vocab\": 3}}").unwrap();
        let e = ClientTokenizer::load(&broken).unwrap_err();
        assert!(matches!(&e, TokenizerError::Unreadable { .. }), "{e:?}");
        assert!(
            e.to_string().contains("not a Hugging Face tokenizer.json"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_tokenizer_json_encodes_with_and_without_special_tokens() {
        // A three-letter byte-level BPE with one merge, a special token and a BOS post-processor.
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [{"id": 4, "content": "<s>", "single_word": false, "lstrip": false,
                              "rstrip": false, "normalized": false, "special": true}],
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": true},
            "post_processor": {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [4], "tokens": ["<s>"]}}},
            "decoder": null,
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "<s>": 4}, "merges": [["a", "b"]]}
        });
        let dir = std::env::temp_dir().join(format!("ponder-tok-ok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, json.to_string()).unwrap();
        let t = ClientTokenizer::load(&path).unwrap();
        assert_eq!(t.encode("ab a<s>b", false).unwrap(), vec![2, 3, 0, 4, 1]);
        assert_eq!(t.encode("ab", true).unwrap(), vec![4, 2]);
        assert_eq!(t.encode("", false).unwrap(), Vec::<TokenId>::new());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
