//! [`ServeFile`]: the settings file of `ponder serve --config FILE`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::ConfigFileError;

/// The settings of `ponder serve` read from a JSON object, every key optional. The keys are the
/// long flags of `ponder serve` with `_` for `-`: the server's own (`host`, `port`, `api_key`,
/// `max_queue`, `max_body_bytes`, `max_n`, `max_tokens`, `max_budget_tokens`,
/// `max_solve_seconds`, `grace_seconds`, `model_name`) and the model's (`backend`, `model`,
/// `n_gpu_layers`, `ctx`, `threads`, `n_seq_max`, `kv_layout`, `deterministic`, `url` (a list),
/// `served_model`, `max_in_flight`, `timeout_ms`, `attempts`, `tokenizer`). A flag or environment variable
/// given on the command line wins over the file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct ServeFile {
    /// `--host`.
    pub host: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--api-key` (`PONDER_API_KEY`).
    pub api_key: Option<String>,
    /// `--max-queue`.
    pub max_queue: Option<usize>,
    /// `--max-body-bytes`.
    pub max_body_bytes: Option<usize>,
    /// `--max-n`.
    pub max_n: Option<u32>,
    /// `--max-tokens`.
    pub max_tokens: Option<u32>,
    /// `--max-budget-tokens`.
    pub max_budget_tokens: Option<u64>,
    /// `--max-solve-seconds`.
    pub max_solve_seconds: Option<u64>,
    /// `--grace-seconds`.
    pub grace_seconds: Option<u64>,
    /// `--model-name`.
    pub model_name: Option<String>,
    /// `--backend` (`llama` or `remote`).
    pub backend: Option<String>,
    /// `--model` (`PONDER_MODEL`).
    pub model: Option<PathBuf>,
    /// `--n-gpu-layers`.
    pub n_gpu_layers: Option<u32>,
    /// `--ctx`.
    #[serde(alias = "n_ctx")]
    pub ctx: Option<u32>,
    /// `--threads`.
    pub threads: Option<u32>,
    /// `--n-seq-max`.
    pub n_seq_max: Option<u32>,
    /// `--kv-layout` (`unified`, `streams` or `auto`).
    pub kv_layout: Option<crate::lm::KvLayout>,
    /// `--deterministic`.
    pub deterministic: Option<bool>,
    /// `--url`, once per server.
    pub url: Option<Vec<String>>,
    /// `--served-model`.
    pub served_model: Option<String>,
    /// `--max-in-flight`.
    pub max_in_flight: Option<usize>,
    /// `--timeout-ms`.
    pub timeout_ms: Option<u64>,
    /// `--attempts`.
    pub attempts: Option<u32>,
    /// `--tokenizer`.
    pub tokenizer: Option<PathBuf>,
}

impl ServeFile {
    /// Reads and checks `path`.
    ///
    /// # Errors
    /// [`ConfigFileError::Read`] if it cannot be read; as [`ServeFile::parse`].
    pub fn load(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text`, the contents of `path` (named in errors).
    ///
    /// # Errors
    /// [`ConfigFileError::Syntax`] if `text` is not one JSON object; [`ConfigFileError::Key`]
    /// naming the first key that is unknown or whose value has the wrong type.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigFileError> {
        let syntax = |reason: String| ConfigFileError::Syntax {
            path: path.to_path_buf(),
            reason,
        };
        let map: Map<String, Value> = match serde_json::from_str(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(syntax("the top level must be an object".into())),
            Err(e) => return Err(syntax(e.to_string())),
        };
        // Key by key, so that an error names the key it is about (serde's own messages for a
        // wrong type do not).
        for (key, value) in &map {
            let one = Map::from_iter([(key.clone(), value.clone())]);
            if let Err(e) = serde_json::from_value::<Self>(Value::Object(one)) {
                return Err(ConfigFileError::Key {
                    path: path.to_path_buf(),
                    key: key.clone(),
                    reason: e.to_string(),
                });
            }
        }
        serde_json::from_value(Value::Object(map)).map_err(|e| syntax(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ServeFile, ConfigFileError> {
        ServeFile::parse(text, Path::new("serve.json"))
    }

    #[test]
    fn keys_read_as_flags() {
        let f = parse(r#"{"port": 9000, "max_n": 4, "n_ctx": 2048, "url": ["http://a"]}"#).unwrap();
        assert_eq!(f.port, Some(9000));
        assert_eq!(f.max_n, Some(4));
        assert_eq!(f.ctx, Some(2048));
        assert_eq!(f.url, Some(vec!["http://a".to_string()]));
        assert_eq!(parse("{}").unwrap(), ServeFile::default());
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let e = parse(r#"{"port": 1, "max_qeue": 3}"#).unwrap_err();
        assert!(
            matches!(&e, ConfigFileError::Key { key, .. } if key == "max_qeue"),
            "{e:?}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("serve.json") && msg.contains("max_queue"),
            "{msg}"
        );

        let e = parse(r#"{"port": 70000}"#).unwrap_err();
        assert!(
            matches!(&e, ConfigFileError::Key { key, .. } if key == "port"),
            "{e:?}"
        );
        let e = parse(r#"{"max_n": "eight"}"#).unwrap_err();
        assert!(
            matches!(&e, ConfigFileError::Key { key, .. } if key == "max_n"),
            "{e:?}"
        );
        let e = parse(r#"{"kv_layout": "paged"}"#).unwrap_err();
        assert!(
            matches!(&e, ConfigFileError::Key { key, .. } if key == "kv_layout"),
            "{e:?}"
        );
        assert!(e.to_string().contains("streams"), "{e}");
        assert_eq!(
            parse(r#"{"kv_layout": "streams"}"#).unwrap().kv_layout,
            Some(crate::lm::KvLayout::Streams)
        );
        let e = parse(r#"{"url": "http://a"}"#).unwrap_err();
        assert!(
            matches!(&e, ConfigFileError::Key { key, .. } if key == "url"),
            "{e:?}"
        );

        for bad in ["[1]", "{\"port\": ", ""] {
            let e = parse(bad).unwrap_err();
            assert!(matches!(e, ConfigFileError::Syntax { .. }), "{bad}: {e:?}");
            assert!(e.to_string().contains("serve.json"));
        }
    }
}
