//! EC2 Query request parameters: flattened lists (`VpcId.1`), filters
//! (`Filter.1.Name`, `Filter.1.Value.1`) and pagination.

use std::collections::BTreeMap;

use crate::error::ApiError;

/// Decoded form parameters of one request.
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

/// One `Filter.N` entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

impl Filter {
    /// Returns whether any filter value matches `value`. Filter values are EC2 wildcard
    /// patterns: `*` matches zero or more characters, `?` exactly one, and a backslash makes
    /// the next character literal (as the AWS SDK for .NET documents `Amazon.EC2.Model.Filter`).
    pub fn accepts(&self, value: &str) -> bool {
        self.values
            .iter()
            .any(|pattern| wildcard_match(pattern, value))
    }

    /// Returns whether the filter matches on tags (`tag:<key>` or `tag-key`).
    pub fn is_tag_filter(&self) -> bool {
        self.name.starts_with("tag:") || self.name == "tag-key"
    }
}

/// One element of a parsed filter value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
}

/// Matches `text` against an EC2 filter value with `*`, `?` and backslash escapes.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '\\' => Token::Literal(chars.next().unwrap_or('\\')),
            '?' => Token::AnyOne,
            '*' => Token::AnyRun,
            other => Token::Literal(other),
        });
    }
    let text: Vec<char> = text.chars().collect();

    // Greedy matching that backtracks only to the most recent `*`. The worst case is
    // O(pattern length × text length).
    let (mut t, mut p) = (0, 0);
    let mut last_run: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Token::AnyRun) => {
                last_run = Some((p, t));
                p += 1;
            }
            Some(Token::AnyOne) => {
                p += 1;
                t += 1;
            }
            Some(Token::Literal(c)) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match last_run {
                Some((run_p, run_t)) => {
                    p = run_p + 1;
                    t = run_t + 1;
                    last_run = Some((run_p, run_t + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(|token| *token == Token::AnyRun)
}

impl Params {
    /// Decodes a form body; an undecodable body gives no parameters.
    pub fn parse(body: &[u8]) -> Params {
        let pairs = serde_urlencoded::from_bytes(body).unwrap_or_default();
        Params { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Returns the values of `Prefix.1`, `Prefix.2`, … in index order.
    pub fn list(&self, prefix: &str) -> Vec<String> {
        let mut indexed: BTreeMap<u32, String> = BTreeMap::new();
        for (key, value) in &self.pairs {
            if let Some(index) = key
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('.'))
                .and_then(|n| n.parse::<u32>().ok())
            {
                indexed.insert(index, value.clone());
            }
        }
        indexed.into_values().collect()
    }

    /// Returns the `Filter.N.Name` / `Filter.N.Value.M` entries in index order.
    pub fn filters(&self) -> Vec<Filter> {
        let mut names: BTreeMap<u32, String> = BTreeMap::new();
        let mut values: BTreeMap<u32, BTreeMap<u32, String>> = BTreeMap::new();
        for (key, value) in &self.pairs {
            let Some(rest) = key.strip_prefix("Filter.") else {
                continue;
            };
            let mut parts = rest.split('.');
            let Some(Ok(index)) = parts.next().map(str::parse::<u32>) else {
                continue;
            };
            match (parts.next(), parts.next().map(str::parse::<u32>)) {
                (Some("Name"), None) => {
                    names.insert(index, value.clone());
                }
                (Some("Value"), Some(Ok(value_index))) => {
                    values
                        .entry(index)
                        .or_default()
                        .insert(value_index, value.clone());
                }
                _ => {}
            }
        }
        names
            .into_iter()
            .map(|(index, name)| Filter {
                name,
                values: values
                    .remove(&index)
                    .map(|v| v.into_values().collect())
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Returns a required parameter or EC2's `MissingParameter` error.
    pub fn required(&self, key: &str) -> Result<&str, ApiError> {
        self.get(key).ok_or_else(|| {
            ApiError::client(
                "MissingParameter",
                format!("The request must contain the parameter {key}"),
            )
        })
    }

    /// Cuts one page of `items` from `MaxResults` and `NextToken`. `min` and `max` are the
    /// action's `MaxResults` range. Without `MaxResults` every item is returned.
    pub fn page<T>(
        &self,
        items: Vec<T>,
        min: usize,
        max: usize,
    ) -> Result<(Vec<T>, Option<String>), ApiError> {
        let start = match self.get("NextToken") {
            None | Some("") => 0,
            Some(token) => decode_token(token)
                .filter(|offset| *offset <= items.len())
                .ok_or_else(|| {
                    ApiError::client(
                        "InvalidPaginationToken",
                        format!("The pagination token '{token}' is invalid."),
                    )
                })?,
        };
        let limit = match self.get("MaxResults") {
            None => usize::MAX,
            Some(text) => match text.parse::<usize>() {
                Ok(limit) if (min..=max).contains(&limit) => limit,
                _ => {
                    return Err(ApiError::client(
                        "InvalidParameterValue",
                        format!(
                            "Value ( {text} ) for parameter maxResults is invalid. Expecting a \
                             value between {min} and {max}."
                        ),
                    ));
                }
            },
        };
        let end = start.saturating_add(limit).min(items.len());
        let next = (end < items.len()).then(|| encode_token(end));
        let page = items.into_iter().skip(start).take(end - start).collect();
        Ok((page, next))
    }
}

/// Page tokens carry the offset of the next item behind a fixed prefix, so that a token from
/// another API is rejected.
fn encode_token(offset: usize) -> String {
    format!("sandbox-page-{offset}")
}

fn decode_token(token: &str) -> Option<usize> {
    token.strip_prefix("sandbox-page-")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_filters_are_read_in_index_order() {
        let params = Params::parse(
            b"Action=DescribeVpcEndpoints&VpcEndpointId.2=b&VpcEndpointId.1=a&\
              Filter.1.Name=vpc-id&Filter.1.Value.2=y&Filter.1.Value.1=x",
        );
        assert_eq!(params.list("VpcEndpointId"), vec!["a", "b"]);
        assert_eq!(
            params.filters(),
            vec![Filter {
                name: "vpc-id".to_owned(),
                values: vec!["x".to_owned(), "y".to_owned()],
            }]
        );
    }

    #[test]
    fn filter_values_are_wildcard_patterns() {
        let filter = |value: &str| Filter {
            name: "service-name".to_owned(),
            values: vec![value.to_owned()],
        };
        assert!(filter("com.amazonaws.us-east-1.s3").accepts("com.amazonaws.us-east-1.s3"));
        assert!(filter("com.amazonaws.*.s3").accepts("com.amazonaws.us-east-1.s3"));
        assert!(filter("*").accepts(""));
        assert!(filter("us-east-1?").accepts("us-east-1a"));
        assert!(!filter("us-east-1?").accepts("us-east-1"));
        assert!(!filter("com.amazonaws.*.s3").accepts("com.amazonaws.us-east-1.s3-outposts"));
        assert!(filter(r"a\*b").accepts("a*b"));
        assert!(!filter(r"a\*b").accepts("axb"));
        assert!(!filter("vpc-1").accepts("vpc-12"));
    }

    #[test]
    fn page_walks_with_tokens() {
        let params = Params::parse(b"MaxResults=5");
        let (page, next) = params.page((0..7).collect(), 5, 1000).unwrap();
        assert_eq!(page, vec![0, 1, 2, 3, 4]);
        let body = format!("MaxResults=5&NextToken={}", next.unwrap());
        let (page, next) = Params::parse(body.as_bytes())
            .page((0..7).collect(), 5, 1000)
            .unwrap();
        assert_eq!(page, vec![5, 6]);
        assert_eq!(next, None);
    }

    #[test]
    fn page_rejects_small_max_results() {
        let error = Params::parse(b"MaxResults=2")
            .page(vec![1], 5, 1000)
            .unwrap_err();
        assert_eq!(error.code, "InvalidParameterValue");
    }
}
