//! [`ServeFile`]: the settings file of `ponder serve --config FILE`.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::backend::BackendConfig;
use crate::error::ConfigFileError;

/// The settings of `ponder serve` read from a JSON object, every key optional: the server's own
/// under the names of its long flags with `_` for `-` (`host`, `port`, `api_key`, `max_queue`,
/// `max_body_bytes`, `max_n`, `max_tokens`, `max_budget_tokens`, `max_solve_seconds`,
/// `grace_seconds`, `model_name`), and the model under `backend` as a [`BackendConfig`] — the
/// same JSON as the C ABI's engine configuration:
/// `{"port": 8080, "backend": {"model": "models/x.gguf", "n_ctx": 8192}}`. A flag or
/// environment variable given on the command line wins over the file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
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
    /// Where the model runs, as [`BackendConfig::from_json`] reads it; its keys as the file
    /// wrote them in [`ServeFile::keys`].
    #[serde(skip)]
    pub backend: Option<BackendConfig>,
    /// The keys the file set, the `backend` object's as `backend.KEY` (`remote`'s own as
    /// `backend.remote.KEY`), so that an error can name the file and the key.
    #[serde(skip)]
    pub keys: Vec<String>,
}

/// Keys that a settings file took at its top level before the model's settings moved under
/// `backend`, with the key that replaces each.
const MOVED: &[(&str, &str)] = &[
    ("model", "model"),
    ("n_gpu_layers", "n_gpu_layers"),
    ("ctx", "n_ctx"),
    ("n_ctx", "n_ctx"),
    ("threads", "n_threads"),
    ("n_seq_max", "n_seq_max"),
    ("kv_layout", "kv_layout"),
    ("deterministic", "deterministic"),
    ("max_seqs_per_solve", "max_seqs_per_solve"),
    ("max_cells_per_solve", "max_cells_per_solve"),
    ("url", "remote.urls"),
    ("served_model", "remote.model"),
    ("max_in_flight", "remote.max_in_flight"),
    ("timeout_ms", "remote.timeout_ms"),
    ("attempts", "remote.attempts"),
    ("tokenizer", "remote.tokenizer"),
];

impl ServeFile {
    /// Reads and checks `path`.
    ///
    /// # Errors
    /// [`ConfigFileError::Read`] if it cannot be read; as [`ServeFile::parse`].
    pub fn load(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            ConfigFileError::Read(crate::error::IoError::new(
                "read the settings file",
                path,
                source,
            ))
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text`, the contents of `path` (named in errors).
    ///
    /// # Errors
    /// [`ConfigFileError::Syntax`] if `text` is not one JSON object; [`ConfigFileError::Key`]
    /// naming the first key that is unknown or whose value has the wrong type (`backend.FIELD`
    /// for the model's settings).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigFileError> {
        let syntax = |reason: String| ConfigFileError::Syntax {
            path: path.to_path_buf(),
            reason,
        };
        let key_error = |key: String, reason: String| ConfigFileError::Key {
            path: path.to_path_buf(),
            key,
            reason,
        };
        let mut map: Map<String, Value> = match serde_json::from_str(text) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(syntax("the top level must be an object".into())),
            Err(e) => return Err(syntax(e.to_string())),
        };
        let backend = map.remove("backend");
        let mut keys: Vec<String> = map.keys().cloned().collect();
        // Key by key, so that an error names the key it is about (serde's own messages for a
        // wrong type do not).
        for (key, value) in &map {
            if let Some((_, to)) = MOVED.iter().find(|(from, _)| from == key) {
                return Err(key_error(
                    key.clone(),
                    format!(
                        "the model's settings go under \"backend\" (the C ABI's engine JSON): \
                         write {{\"backend\": {{\"{to}\": …}}}}"
                    ),
                ));
            }
            let one = Map::from_iter([(key.clone(), value.clone())]);
            if let Err(e) = serde_json::from_value::<Self>(Value::Object(one)) {
                return Err(key_error(key.clone(), e.to_string()));
            }
        }
        let mut file: Self =
            serde_json::from_value(Value::Object(map)).map_err(|e| syntax(e.to_string()))?;
        if let Some(value) = backend {
            keys.extend(backend_keys(&value));
            let config = BackendConfig::from_json(value.clone())
                .map_err(|e| key_error(failing_key(&value, e.field), e.reason))?;
            file.backend = Some(config);
        }
        file.keys = keys;
        Ok(file)
    }

    /// The key that set `field` (as [`crate::ConfigError::field`] names it) when the file set
    /// it: a server setting's own name, or `backend.FIELD` (`backend.remote.FIELD`) for the
    /// model's, for an error that blames the file.
    pub fn key_of(&self, field: &str) -> Option<&str> {
        self.keys.iter().map(String::as_str).find(|k| {
            *k == field
                || k.strip_prefix("backend.") == Some(field)
                || k.strip_prefix("backend.remote.") == Some(field)
        })
    }
}

/// The key of `backend` that [`BackendConfig::from_json`] refused: the field it names, or, when
/// it names only `backend` (a value serde could not read), the first key that fails alone.
fn failing_key(value: &Value, field: &str) -> String {
    if field != "backend" {
        return format!("backend.{field}");
    }
    if let Value::Object(map) = value {
        let kind = map.get("backend").cloned();
        for (key, v) in map {
            if key == "backend" || key == "remote" {
                continue;
            }
            let mut one = Map::from_iter([(key.clone(), v.clone())]);
            if let Some(kind) = &kind {
                one.insert("backend".into(), kind.clone());
            }
            if BackendConfig::from_json(Value::Object(one)).is_err() {
                return format!("backend.{key}");
            }
        }
    }
    "backend".into()
}

/// The keys a `backend` object sets as `backend.KEY`, `remote`'s own as `backend.remote.KEY`.
fn backend_keys(value: &Value) -> Vec<String> {
    let Value::Object(map) = value else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for (key, value) in map {
        match (key.as_str(), value) {
            ("remote", Value::Object(remote)) => {
                keys.extend(remote.keys().map(|k| format!("backend.remote.{k}")))
            }
            _ => keys.push(format!("backend.{key}")),
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn parse(text: &str) -> Result<ServeFile, ConfigFileError> {
        ServeFile::parse(text, Path::new("serve.json"))
    }

    #[test]
    fn server_keys_read_as_flags_and_the_model_as_a_backend_config() {
        let f = parse(
            r#"{"port": 9000, "max_n": 4, "backend": {"model": "m.gguf", "n_ctx": 2048, "kv_layout": "streams"}}"#,
        )
        .unwrap();
        assert_eq!(f.port, Some(9000));
        assert_eq!(f.max_n, Some(4));
        let Some(BackendConfig::Llama(c)) = &f.backend else {
            panic!("{f:?}")
        };
        assert_eq!(c.n_ctx, 2048);
        assert_eq!(c.kv_layout, crate::lm::KvLayout::Streams);
        assert_eq!(c.model, PathBuf::from("m.gguf"));
        assert_eq!(f.key_of("n_ctx"), Some("backend.n_ctx"));
        assert_eq!(f.key_of("max_n"), Some("max_n"));
        assert_eq!(f.key_of("n_threads"), None);

        let f = parse(r#"{"backend": {"backend": "remote", "remote": {"urls": ["http://a"]}}}"#)
            .unwrap();
        let Some(BackendConfig::Remote { remote }) = &f.backend else {
            panic!("{f:?}")
        };
        assert_eq!(remote.urls, vec!["http://a".to_string()]);
        assert_eq!(f.key_of("urls"), Some("backend.remote.urls"));
        assert_eq!(parse("{}").unwrap(), ServeFile::default());
    }

    #[test]
    fn the_old_top_level_model_keys_say_where_they_went() {
        for (key, to) in [("ctx", "n_ctx"), ("model", "model"), ("url", "remote.urls")] {
            let e = parse(&format!(r#"{{"{key}": 1}}"#)).unwrap_err();
            assert!(
                matches!(&e, ConfigFileError::Key { key: k, .. } if k == key),
                "{e:?}"
            );
            let msg = e.to_string();
            assert!(msg.contains("backend") && msg.contains(to), "{msg}");
        }
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
        let e = parse(r#"{"backend": {"kv_layout": "paged"}}"#).unwrap_err();
        assert!(
            matches!(&e, ConfigFileError::Key { key, .. } if key == "backend.kv_layout"),
            "{e:?}"
        );
        assert!(e.to_string().contains("streams"), "{e}");
        let e = parse(r#"{"backend": {"backend": "cloud"}}"#).unwrap_err();
        assert!(
            matches!(&e, ConfigFileError::Key { key, .. } if key == "backend"),
            "{e:?}"
        );
        let e = parse(r#"{"backend": {"model": "m.gguf", "remote": {}}}"#).unwrap_err();
        assert!(
            matches!(&e, ConfigFileError::Key { key, .. } if key == "backend.remote"),
            "{e:?}"
        );

        for bad in ["[1]", "{\"port\": ", ""] {
            let e = parse(bad).unwrap_err();
            assert!(matches!(e, ConfigFileError::Syntax { .. }), "{bad}: {e:?}");
            assert!(e.to_string().contains("serve.json"));
        }
    }
}
