//! Constraint checks from the SageMaker service model, reported in the Coral form that
//! SageMaker uses: `N validation errors detected: Value '<v>' at '<path>' failed to satisfy
//! constraint: <constraint>`, joined with `; `.

use regex::Regex;

use crate::error::ApiError;

/// A model pattern, matched against the whole value although the model does not anchor it.
pub struct Pattern {
    /// The pattern as the model writes it, quoted in error messages.
    pub source: &'static str,
    regex: Regex,
}

impl Pattern {
    /// Compiles a model pattern for full-match checks.
    ///
    /// # Panics
    /// Panics when `source` is not a valid regular expression; every caller passes a constant.
    pub fn new(source: &'static str) -> Pattern {
        let regex = Regex::new(&format!("^(?:{source})$")).expect("model pattern compiles");
        Pattern { source, regex }
    }

    pub fn is_match(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

/// Constraint violations collected while checking one request.
#[derive(Default)]
pub struct Violations {
    messages: Vec<String>,
}

impl Violations {
    fn push(&mut self, value: &str, path: &str, constraint: &str) {
        self.messages.push(format!(
            "Value {value} at '{path}' failed to satisfy constraint: {constraint}"
        ));
    }

    /// Records a violation with a custom constraint text.
    pub fn constraint(&mut self, value: &str, path: &str, constraint: &str) {
        self.push(&format!("'{value}'"), path, constraint);
    }

    /// Checks that a required member is present; returns whether it is.
    pub fn required<T>(&mut self, path: &str, value: Option<&T>) -> bool {
        if value.is_none() {
            self.push("null", path, "Member must not be null");
        }
        value.is_some()
    }

    /// Checks a string's length in characters and, when given, its pattern.
    pub fn string(
        &mut self,
        path: &str,
        value: &str,
        min: usize,
        max: usize,
        pattern: Option<&Pattern>,
    ) {
        self.string_shown(path, value, value, min, max, pattern);
    }

    /// Like [`Violations::string`] but quotes `shown` in place of the value, for secrets.
    pub fn string_shown(
        &mut self,
        path: &str,
        value: &str,
        shown: &str,
        min: usize,
        max: usize,
        pattern: Option<&Pattern>,
    ) {
        let length = value.chars().count();
        let shown = format!("'{shown}'");
        if length < min {
            let constraint = format!("Member must have length greater than or equal to {min}");
            self.push(&shown, path, &constraint);
        }
        if length > max {
            let constraint = format!("Member must have length less than or equal to {max}");
            self.push(&shown, path, &constraint);
        }
        if let Some(pattern) = pattern
            && !pattern.is_match(value)
        {
            let constraint = format!(
                "Member must satisfy regular expression pattern: {}",
                pattern.source
            );
            self.push(&shown, path, &constraint);
        }
    }

    /// Checks the number of entries of a list or map.
    pub fn count(&mut self, path: &str, items: &[String], min: usize, max: usize) {
        let shown = format!("'[{}]'", items.join(", "));
        if items.len() < min {
            let constraint = format!("Member must have length greater than or equal to {min}");
            self.push(&shown, path, &constraint);
        }
        if items.len() > max {
            let constraint = format!("Member must have length less than or equal to {max}");
            self.push(&shown, path, &constraint);
        }
    }

    /// Checks that a value is one of an enum's members.
    pub fn one_of(&mut self, path: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            let constraint = format!(
                "Member must satisfy enum value set: [{}]",
                allowed.join(", ")
            );
            self.constraint(value, path, &constraint);
        }
    }

    /// Checks an integer range.
    pub fn range(&mut self, path: &str, value: i64, min: i64, max: i64) {
        let shown = format!("'{value}'");
        if value < min {
            let constraint = format!("Member must have value greater than or equal to {min}");
            self.push(&shown, path, &constraint);
        }
        if value > max {
            let constraint = format!("Member must have value less than or equal to {max}");
            self.push(&shown, path, &constraint);
        }
    }

    /// Returns a `ValidationException` listing every violation, or `Ok` when there is none.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.messages.len() {
            0 => Ok(()),
            1 => Err(ApiError::validation(format!(
                "1 validation error detected: {}",
                self.messages[0]
            ))),
            n => Err(ApiError::validation(format!(
                "{n} validation errors detected: {}",
                self.messages.join("; ")
            ))),
        }
    }
}

/// Checks a CIDR block in IPv4 or IPv6 notation, with a prefix length in range.
///
/// NOTE: the model's IPv6 branch has typos (`2[0-4]d` for `2[0-4]\d`), so this accepts every
/// IPv6 CIDR that the standard library parses instead of copying the regex.
pub fn is_cidr(value: &str) -> bool {
    let Some((address, prefix)) = value.split_once('/') else {
        return false;
    };
    let has_leading_zero = prefix.len() > 1 && prefix.starts_with('0');
    if prefix.is_empty()
        || prefix.len() > 3
        || has_leading_zero
        || !prefix.bytes().all(|b| b.is_ascii_digit())
    {
        return false;
    }
    let Ok(prefix) = prefix.parse::<u8>() else {
        return false;
    };
    // The model regex rejects octets with leading zeros such as `01.2.3.4`, and so does the
    // standard parser.
    if address.parse::<std::net::Ipv4Addr>().is_ok() {
        return prefix <= 32;
    }
    address.parse::<std::net::Ipv6Addr>().is_ok() && prefix <= 128
}

/// Returns whether a CIDR block is IPv6.
pub fn is_ipv6_cidr(value: &str) -> bool {
    value.contains(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_matches_whole_value() {
        let pattern = Pattern::new(r"[a-zA-Z0-9]([a-zA-Z0-9\-]){0,62}");
        assert!(pattern.is_match("wf-1"));
        assert!(pattern.is_match("wf-"));
        assert!(!pattern.is_match("-wf"));
        assert!(!pattern.is_match("wf 1"));
    }

    #[test]
    fn one_violation_uses_singular_form() {
        let mut violations = Violations::default();
        violations.string("workforceName", "", 1, 63, None);
        let error = violations.finish().unwrap_err();
        assert_eq!(
            error.message,
            "1 validation error detected: Value '' at 'workforceName' failed to satisfy \
             constraint: Member must have length greater than or equal to 1"
        );
    }

    #[test]
    fn several_violations_are_joined() {
        let mut violations = Violations::default();
        violations.required::<String>("workforceName", None);
        violations.one_of("ipAddressType", "ipv5", &["ipv4", "dualstack"]);
        let error = violations.finish().unwrap_err();
        assert!(
            error
                .message
                .starts_with("2 validation errors detected: Value null at")
        );
        assert!(error.message.contains("; Value 'ipv5' at 'ipAddressType'"));
    }

    #[test]
    fn cidr_forms() {
        assert!(is_cidr("10.0.0.0/16"));
        assert!(is_cidr("1.1.1.1/32"));
        assert!(is_cidr("2001:db8::/32"));
        assert!(!is_cidr("10.0.0.0/33"));
        assert!(!is_cidr("10.0.0.0"));
        assert!(!is_cidr("10.0.0.256/8"));
        assert!(!is_cidr("10.0.0.0/+8"));
        assert!(!is_cidr("2001:db8::/129"));
    }
}
