//! Resource tags passed to `CreateWorkforce`.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

use serde::{Deserialize, Serialize};

use super::Violations;

/// Tags per resource, from the SageMaker model's `TagList` (`0..50`).
pub const MAX_TAGS: usize = 50;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// Returns the first character of `value` outside the model's tag pattern
/// `[\p{L}\p{Z}\p{N}_.:/=+\-@]`. Letters, separators and numbers are Unicode general
/// categories, which Rust's `is_alphabetic` and `is_whitespace` are wider than (they accept
/// combining marks and control characters such as U+000B).
fn disallowed_tag_char(value: &str) -> Option<char> {
    static ALLOWED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]$").expect("the tag pattern is valid")
    });
    let mut buffer = [0u8; 4];
    value
        .chars()
        .find(|c| !ALLOWED.is_match(c.encode_utf8(&mut buffer)))
}

/// Builds the reason for a tag key or value that contains `c`, which the model does not allow.
fn disallowed_char_reason(c: char) -> String {
    let code = format!("U+{:04X}", u32::from(c));
    let described = if c.is_control() {
        code
    } else {
        format!("'{c}' ({code})")
    };
    format!(
        "contains {described}, which tags do not allow; use only letters, digits, spaces and _ . : / = + - @"
    )
}

impl Tag {
    pub fn parse_list(
        field: &str,
        tags: &[(String, String)],
        violations: &mut Violations,
    ) -> Option<Vec<Tag>> {
        let mut ok = true;
        if tags.len() > MAX_TAGS {
            violations.push(
                field,
                format!("must have at most {MAX_TAGS} tags, but has {}", tags.len()),
            );
            ok = false;
        }
        let mut keys = HashSet::new();
        for (index, (key, value)) in tags.iter().enumerate() {
            let key_field = format!("{field}[{index}].key");
            let key_length = key.chars().count();
            if !(1..=128).contains(&key_length) {
                violations.push(
                    &key_field,
                    format!("must have 1 to 128 characters, but has {key_length}"),
                );
                ok = false;
            } else if let Some(c) = disallowed_tag_char(key) {
                violations.push(&key_field, disallowed_char_reason(c));
                ok = false;
            } else if key.to_ascii_lowercase().starts_with("aws:") {
                violations.push(
                    &key_field,
                    "must not start with 'aws:', which AWS reserves for its own tags",
                );
                ok = false;
            } else if !keys.insert(key.as_str()) {
                violations.push(
                    &key_field,
                    format!("'{key}' is used twice; each tag key may appear once"),
                );
                ok = false;
            }
            let value_field = format!("{field}[{index}].value");
            let value_length = value.chars().count();
            if value_length > 256 {
                violations.push(
                    value_field,
                    format!("must have at most 256 characters, but has {value_length}"),
                );
                ok = false;
            } else if let Some(c) = disallowed_tag_char(value) {
                violations.push(value_field, disallowed_char_reason(c));
                ok = false;
            }
        }
        ok.then(|| {
            tags.iter()
                .map(|(key, value)| Tag {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(values: &[(&str, &str)]) -> Vec<(String, String)> {
        values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn tags_accept_model_characters() {
        let mut violations = Violations::default();
        let tags = Tag::parse_list(
            "tags",
            &pairs(&[
                ("team", "vision"),
                ("cost-center", "a/b:c=d+e@f"),
                ("équipe", ""),
                ("チーム", "٣ Ⅻ\u{a0}x"),
            ]),
            &mut violations,
        );
        assert_eq!(tags.map(|t| t.len()), Some(4));
    }

    #[test]
    fn tags_reject_bad_keys_and_values() {
        for (key, value) in [
            ("", "v"),
            ("a;b", "v"),
            ("k", "v<script>"),
            ("aws:team", "v"),
            // White space and letters to Rust, but control characters and a combining mark
            // to the model's pattern.
            ("k", "a\u{b}b"),
            ("k", "\u{85}"),
            ("k\u{c}", "v"),
            ("k", "\u{345}"),
        ] {
            let mut violations = Violations::default();
            assert!(
                Tag::parse_list("tags", &pairs(&[(key, value)]), &mut violations).is_none(),
                "{key}={value}"
            );
        }
    }

    #[test]
    fn tag_errors_name_their_cause() {
        for (key, value, field, reason) in [
            (
                "team",
                "视觉 👀",
                "tags[0].value",
                "contains '👀' (U+1F440), which tags do not allow; use only letters, digits, spaces and _ . : / = + - @",
            ),
            (
                "a\u{b}b",
                "v",
                "tags[0].key",
                "contains U+000B, which tags do not allow; use only letters, digits, spaces and _ . : / = + - @",
            ),
            (
                "team",
                &"v".repeat(257),
                "tags[0].value",
                "must have at most 256 characters, but has 257",
            ),
            (
                &"k".repeat(129),
                "v",
                "tags[0].key",
                "must have 1 to 128 characters, but has 129",
            ),
            (
                "",
                "v",
                "tags[0].key",
                "must have 1 to 128 characters, but has 0",
            ),
        ] {
            let mut violations = Violations::default();
            Tag::parse_list("tags", &pairs(&[(key, value)]), &mut violations);
            let errors = violations.into_errors();
            assert_eq!(errors.len(), 1, "{key}={value}: {errors:?}");
            assert_eq!(errors[0].field, field, "{key}={value}");
            assert_eq!(errors[0].reason, reason, "{key}={value}");
        }
    }

    #[test]
    fn tags_reject_duplicate_keys() {
        let mut violations = Violations::default();
        assert!(
            Tag::parse_list(
                "tags",
                &pairs(&[("team", "a"), ("team", "b")]),
                &mut violations
            )
            .is_none()
        );
        assert_eq!(violations.into_errors()[0].field, "tags[1].key");
    }
}
