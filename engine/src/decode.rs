//! Reading plain data (JSON-shaped values: what Python dicts, YAML and JSON files become) with
//! field paths, for every decoder of the engine. Each decoder lives beside its type
//! (`Pod::from_value`, `Machine::from_value`, `Config::from_value`, ...); this module only
//! gives them one way to say which field is wrong and why.

use crate::error::{EngineError, Result};
use serde_json::{Map, Value};

/// Which error a decoder raises (the Python class a user catches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Pod,
    Machine,
    Config,
    Reserved,
    Scenario,
}

impl Subject {
    pub fn error(self, path: &str, message: impl Into<String>) -> EngineError {
        let message = message.into();
        let text = if path.is_empty() {
            message
        } else {
            format!("{path}: {message}")
        };
        match self {
            Subject::Pod => EngineError::Pod {
                message: text,
                field: (!path.is_empty()).then(|| path.to_string()),
            },
            Subject::Machine => EngineError::machine(None, text),
            Subject::Config => EngineError::Config {
                message: text,
                key: (!path.is_empty()).then(|| path.to_string()),
                suggestion: None,
            },
            Subject::Reserved => EngineError::reserved(text),
            Subject::Scenario => EngineError::Scenario {
                message: text,
                path: (!path.is_empty()).then(|| path.to_string()),
            },
        }
    }
}

/// The JSON/YAML word for a value's type, as the user wrote it.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "mapping",
    }
}

pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// A mapping being decoded, with its path.
pub struct Obj<'a> {
    pub map: &'a Map<String, Value>,
    pub path: String,
    pub subject: Subject,
}

impl<'a> Obj<'a> {
    pub fn new(v: &'a Value, path: &str, subject: Subject) -> Result<Obj<'a>> {
        match v {
            Value::Object(map) => Ok(Obj {
                map,
                path: path.to_string(),
                subject,
            }),
            other => Err(subject.error(path, format!("expected a mapping, got {}", kind(other)))),
        }
    }

    pub fn err(&self, key: &str, message: impl Into<String>) -> EngineError {
        self.subject.error(&join(&self.path, key), message)
    }

    pub fn at(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// A key's value; null counts as absent, as it does for Kubernetes.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A key that may be spelt snake_case (engine data) or camelCase (files): giving both is
    /// an error, so that neither is silently ignored.
    pub fn either(&self, snake: &str, camel: &str) -> Result<Option<(&'a Value, String)>> {
        if snake != camel && self.map.contains_key(snake) && self.map.contains_key(camel) {
            return Err(self.subject.error(
                &self.path,
                format!("both '{snake}' and '{camel}' given; use one"),
            ));
        }
        Ok(self
            .get(camel)
            .map(|v| (v, self.at(camel)))
            .or_else(|| self.get(snake).map(|v| (v, self.at(snake)))))
    }

    pub fn obj(&self, key: &str) -> Result<Option<Obj<'a>>> {
        self.get(key)
            .map(|v| Obj::new(v, &self.at(key), self.subject))
            .transpose()
    }

    pub fn str(&self, key: &str) -> Result<Option<&'a str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.err(key, format!("expected a string, got {}", kind(other)))),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.err(key, format!("expected a bool, got {}", kind(other)))),
        }
    }

    pub fn u64(&self, key: &str) -> Result<Option<u64>> {
        self.get(key)
            .map(|v| uint(v, &self.at(key), self.subject))
            .transpose()
    }

    pub fn list(&self, key: &str) -> Result<Option<&'a Vec<Value>>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(other) => Err(self.err(key, format!("expected a list, got {}", kind(other)))),
        }
    }

    /// Refuses keys outside `known`, naming the closest known one.
    pub fn deny_unknown(&self, what: &str, known: &[&str]) -> Result<()> {
        for k in self.map.keys() {
            if !known.contains(&k.as_str()) {
                let e = EngineError::unknown_key(what, k, known);
                return Err(match self.subject {
                    Subject::Config => e,
                    other => other.error(&self.path, e.message()),
                });
            }
        }
        Ok(())
    }
}

/// A non-negative whole number. Fractions and bools are refused rather than coerced.
pub fn uint(v: &Value, path: &str, subject: Subject) -> Result<u64> {
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(|| {
            let why = if n.is_f64() {
                "expected a whole number"
            } else {
                "expected a number from 0 to 2^64-1"
            };
            subject.error(path, format!("{why}, got {n}"))
        }),
        other => Err(subject.error(
            path,
            format!("expected a whole number, got {}", kind(other)),
        )),
    }
}
