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

/// Checks the model's tag pattern: letters, separators and numbers are Unicode general
/// categories, which Rust's `is_alphabetic` and `is_whitespace` are wider than (they accept
/// combining marks and control characters such as U+000B).
fn tag_chars_ok(value: &str) -> bool {
    static PATTERN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$").expect("the tag pattern is valid")
    });
    PATTERN.is_match(value)
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
            if !(1..=128).contains(&key_length) || !tag_chars_ok(key) {
                violations.push(
                    &key_field,
                    "must have 1 to 128 characters: letters, digits, spaces and _ . : / = + - @",
                );
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
            if value.chars().count() > 256 || !tag_chars_ok(value) {
                violations.push(
                    format!("{field}[{index}].value"),
                    "must have at most 256 characters: letters, digits, spaces and _ . : / = + - @",
                );
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
