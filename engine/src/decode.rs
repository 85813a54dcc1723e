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

// -- Kubernetes' name formats ------------------------------------------------------------------
//
// As k8s.io/apimachinery/pkg/util/validation/validation.go (IsDNS1123Label, IsDNS1123Subdomain,
// MaxLenError, RegexError) and k8s.io/apimachinery/pkg/api/validate/content/kube.go (IsLabelKey,
// which IsQualifiedName is) define them, with their texts, so a message reads as the API
// server's would. Each returns every complaint, as the Go functions do; callers report them
// joined. Lengths are in bytes, as Go's len() counts them.

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
pub const DNS1123_LABEL_MAX: usize = 63;
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;
const LABEL_KEY_MAX: usize = 63;

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    // Go's RegexError, spacing included: "(e.g. 'a',  or 'b', regex used ...)".
    let shown: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{msg} (e.g. {}regex used for validation is '{fmt}')",
        shown.join(" or ")
    )
}

fn matches_label(v: &str) -> bool {
    let b = v.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => alnum(f) && alnum(l) && b.iter().all(inner),
        _ => false,
    }
}

fn matches_subdomain(v: &str) -> bool {
    v.split('.').all(matches_label)
}

fn matches_label_key_name(v: &str) -> bool {
    let b = v.as_bytes();
    let alnum = |c: &u8| c.is_ascii_alphanumeric();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => alnum(f) && alnum(l) && b.iter().all(inner),
        _ => false,
    }
}

/// `IsDNS1123Label`: container names, namespaces.
pub fn dns1123_label_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !matches_label(value) {
        if matches_subdomain(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// `IsDNS1123Subdomain`: pod names.
pub fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !matches_subdomain(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// `IsQualifiedName` (`IsLabelKey`): resource names, annotation keys.
pub fn qualified_name_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    dns1123_subdomain_errors(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            return vec![format!(
                "a valid label key {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(LABEL_KEY_MSG, LABEL_KEY_FMT, &["MyName", "my.name", "123-abc"])
            )]
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > LABEL_KEY_MAX {
        errs.push(format!("name part {}", max_len_error(LABEL_KEY_MAX)));
    }
    if !matches_label_key_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                LABEL_KEY_MSG,
                LABEL_KEY_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// A character that would let a printed value change what a terminal or log shows around it:
/// control characters (a newline forges a line, an escape sequence restyles the screen), bidi
/// controls (reorder the text that follows) and other invisible format characters (make two
/// different values look the same).
pub fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}')
}

/// Where a name holds an unprintable character, or else first leaves ASCII, said so that a
/// reader can find it: a look-alike letter (the Cyrillic `е` in `mеmory`) looks right when
/// printed.
pub fn odd_character(value: &str) -> Option<String> {
    let at = |p: &dyn Fn(char) -> bool| value.chars().enumerate().find(|(_, c)| p(*c));
    if let Some((i, c)) = at(&is_unprintable) {
        return Some(format!(
            "character {} is U+{:04X}, an unprintable character",
            i + 1,
            c as u32
        ));
    }
    at(&|c: char| !c.is_ascii()).map(|(i, c)| {
        format!(
            "character {} is U+{:04X} ({c:?}), not ASCII: a letter that looks like an ASCII one?",
            i + 1,
            c as u32
        )
    })
}

/// The value with its unprintable characters escaped (`\n`, `\u{202e}`), so that a message
/// quoting it stays one line and reads in order.
pub fn escaped(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if is_unprintable(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The value as a message shows it: in double quotes, escaped.
pub fn shown(value: &str) -> String {
    format!("\"{}\"", escaped(value).replace('"', "\\\""))
}

/// The API server's "Invalid value" for a name that fails `errors`, with where the name leaves
/// ASCII when it does.
pub fn invalid_name(value: &str, errors: Vec<String>) -> Option<String> {
    if errors.is_empty() {
        return None;
    }
    let mut message = format!("invalid value {}: {}", shown(value), errors.join(", "));
    if let Some(odd) = odd_character(value) {
        message.push_str(&format!(" ({odd})"));
    }
    Some(message)
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn labels_subdomains_and_qualified_names_follow_the_api_server() {
        for ok in ["c1", "a", "pod-1", "123-abc", &"a".repeat(63)] {
            assert!(dns1123_label_errors(ok).is_empty(), "{ok}");
        }
        for bad in ["", "C1", "-a", "a-", "a_b", "mеmory", &"a".repeat(64)] {
            assert!(!dns1123_label_errors(bad).is_empty(), "{bad}");
        }
        assert_eq!(dns1123_label_errors("a.b"), vec!["must not contain dots"]);
        assert!(dns1123_subdomain_errors("web.example-1").is_empty());
        assert!(!dns1123_subdomain_errors("a..b").is_empty());
        assert!(!dns1123_subdomain_errors(&"a".repeat(254)).is_empty());
        for ok in [
            "memory",
            "nvidia.com/gpu",
            "My_Name.1",
            "example.com/MyName",
        ] {
            assert!(qualified_name_errors(ok).is_empty(), "{ok}");
        }
        for bad in ["", "/a", "a/", "a/b/c", "-a", "Example.com/a", "mеmory"] {
            assert!(!qualified_name_errors(bad).is_empty(), "{bad}");
        }
    }

    #[test]
    fn a_look_alike_letter_is_pointed_at() {
        let m = invalid_name("mеmory", dns1123_label_errors("mеmory")).unwrap();
        assert!(m.contains("character 2 is U+0435"), "{m}");
        let m = invalid_name("a\nb", dns1123_label_errors("a\nb")).unwrap();
        assert!(m.contains("\"a\\nb\"") && !m.contains('\n'), "{m}");
    }
}

// -- JSON text with each key once ----------------------------------------------------------------

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

/// Reads a JSON value only to find a key given twice in one object (Go's encoding/json and
/// Python's json keep the last; kubectl refuses such a manifest).
struct NoDuplicates<'a>(&'a RefCell<Option<String>>);

impl<'de> DeserializeSeed<'de> for NoDuplicates<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NoDuplicates<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while seq.next_element_seed(NoDuplicates(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                *self.0.borrow_mut() = Some(key);
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value_seed(NoDuplicates(self.0))?;
        }
        Ok(())
    }
}

/// The first key given twice in one object of a JSON text, with its line and column (1-based),
/// or `None` (also when the text is not JSON, or nests deeper than serde_json's 128 levels:
/// its reader reports that, and no pymm document nests a tenth as deep).
pub fn first_duplicate_key(text: &str) -> Option<(String, usize, usize)> {
    let found = RefCell::new(None);
    let mut d = serde_json::Deserializer::from_str(text);
    match NoDuplicates(&found).deserialize(&mut d) {
        Err(e) => found.into_inner().map(|key| (key, e.line(), e.column())),
        Ok(()) => None,
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_found_with_its_line() {
        let text = "{\"a\": {\"memory\": \"1Gi\",\n  \"memory\": \"100Gi\"}}";
        let (key, line, _) = first_duplicate_key(text).unwrap();
        assert_eq!((key.as_str(), line), ("memory", 2));
        assert_eq!(first_duplicate_key("{\"a\": 1, \"b\": [{\"a\": 2}]}"), None);
        assert_eq!(first_duplicate_key("{\"a\": "), None);
        assert!(first_duplicate_key("[{}, {\"x\": 1, \"x\": 2}]").is_some());
    }
}
