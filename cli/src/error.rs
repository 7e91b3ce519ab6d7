//! Errors of talking to FunLess: the host cannot be reached, the server answered with an error
//! status (its `{"errors":{"detail":..}}` message, else the status and raw body), or a
//! successful answer did not have the expected shape.

use std::error::Error as StdError;
use std::fmt;

use funless_api::types::ErrorBody;
use reqwest::StatusCode;

/// Longest piece of a non-FunLess error body quoted in a message, in characters.
const MAX_QUOTED_BODY: usize = 500;

/// Why a request to FunLess failed.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// No answer: connection refused, DNS failure, timeout, connection dropped.
    Unreachable {
        /// The host as configured.
        host: String,
        /// What reqwest reported.
        source: reqwest::Error,
    },
    /// The server answered with a non-success status.
    Http {
        /// The server's detail, or a description built from the status and body.
        detail: String,
        /// A suggestion for the user, when one is obvious.
        hint: Option<&'static str>,
    },
    /// A success answer whose body is not what this version of `fl` expects.
    /// (serde's message).
    Decode(String),
    /// The request could not be built.
    Request(String),
}

impl ClientError {
    /// The error for a non-success answer with this body.
    pub(crate) fn from_answer(status: StatusCode, body: &str, hint: Option<&'static str>) -> Self {
        let detail = match serde_json::from_str::<ErrorBody>(body) {
            Ok(error) => error.errors.detail,
            Err(_) => {
                let body = body.trim();
                if body.is_empty() {
                    format!("HTTP {status}")
                } else {
                    let mut quoted: String = body.chars().take(MAX_QUOTED_BODY).collect();
                    if quoted.len() < body.len() {
                        quoted.push_str("...");
                    }
                    format!("HTTP {status}: {quoted}")
                }
            }
        };
        ClientError::Http { detail, hint }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable { host, source } => {
                // reqwest's own message repeats the URL; the innermost cause says what happened.
                let mut cause: &dyn StdError = source;
                while let Some(next) = cause.source() {
                    cause = next;
                }
                let verb = if source.is_connect() || source.is_timeout() {
                    "cannot reach FunLess at"
                } else {
                    "request to FunLess failed at"
                };
                write!(f, "{verb} {host}: {cause}")
            }
            ClientError::Http { detail, hint, .. } => {
                write!(f, "{detail}")?;
                if let Some(hint) = hint {
                    write!(f, "\nhint: {hint}")?;
                }
                Ok(())
            }
            ClientError::Decode(message) => {
                write!(f, "unexpected answer from FunLess: {message}")
            }
            ClientError::Request(message) => write!(f, "cannot build the request: {message}"),
        }
    }
}

/// No `source()`: the message already ends with the innermost cause, and `main` prints the whole
/// chain (`{:#}`), which would repeat it.
impl StdError for ClientError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn funless_errors_show_their_detail() {
        let err = ClientError::from_answer(
            StatusCode::NOT_FOUND,
            r#"{"errors":{"detail":"function 'x' not found"}}"#,
            None,
        );
        assert_eq!(err.to_string(), "function 'x' not found");
    }

    #[test]
    fn other_errors_show_status_and_body() {
        let err = ClientError::from_answer(StatusCode::BAD_GATEWAY, "upstream down\n", None);
        assert_eq!(err.to_string(), "HTTP 502 Bad Gateway: upstream down");
        let err = ClientError::from_answer(StatusCode::INTERNAL_SERVER_ERROR, "", Some("retry"));
        assert_eq!(
            err.to_string(),
            "HTTP 500 Internal Server Error\nhint: retry"
        );
        let long = "x".repeat(2000);
        let err = ClientError::from_answer(StatusCode::BAD_REQUEST, &long, None);
        assert!(err.to_string().ends_with("..."));
        assert!(err.to_string().len() < 600);
    }
}
