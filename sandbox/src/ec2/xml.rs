//! A small XML writer for EC2 responses and the EC2 error document.

use std::fmt::Write;

use super::API_VERSION;
use crate::error::ApiError;

/// An EC2 response body under construction.
pub struct Xml {
    body: String,
}

impl Xml {
    /// Starts `<ActionResponse xmlns=…>` with its `requestId`.
    pub fn response(action: &str, request_id: &str) -> Xml {
        let mut xml = Xml {
            body: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response \
                 xmlns=\"http://ec2.amazonaws.com/doc/{API_VERSION}/\">"
            ),
        };
        xml.leaf("requestId", request_id);
        xml
    }

    pub fn open(&mut self, tag: &str) {
        let _ = write!(self.body, "<{tag}>");
    }

    pub fn close(&mut self, tag: &str) {
        let _ = write!(self.body, "</{tag}>");
    }

    /// Writes `<tag>value</tag>` with the value escaped.
    pub fn leaf(&mut self, tag: &str, value: &str) {
        let _ = write!(self.body, "<{tag}>{}</{tag}>", escape(value));
    }

    pub fn flag(&mut self, tag: &str, value: bool) {
        self.leaf(tag, if value { "true" } else { "false" });
    }

    /// Writes `<tag><item>v1</item><item>v2</item></tag>`.
    pub fn string_set(&mut self, tag: &str, values: &[String]) {
        self.open(tag);
        for value in values {
            self.leaf("item", value);
        }
        self.close(tag);
    }

    /// Writes `nextToken` when there is another page.
    pub fn next_token(&mut self, token: Option<&str>) {
        if let Some(token) = token {
            self.leaf("nextToken", token);
        }
    }

    /// Closes the root element and returns the document.
    pub fn finish(mut self, action: &str) -> String {
        self.close(&format!("{action}Response"));
        self.body
    }
}

/// Builds the EC2 error document.
pub fn error_body(error: &ApiError, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code>\
         <Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
        escape(error.code),
        escape(&error.message),
        escape(request_id)
    )
}

/// Escapes text content. Quotes need no escaping outside attributes, and EC2 leaves them as is.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_escapes_markup() {
        let mut xml = Xml::response("DescribeVpcs", "r1");
        xml.leaf("name", "a<b&c");
        let body = xml.finish("DescribeVpcs");
        assert!(body.contains("<name>a&lt;b&amp;c</name>"));
        assert!(body.ends_with("</DescribeVpcsResponse>"));
    }
}
