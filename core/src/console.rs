//! The web console at `/ui` of the API's address: a static single-page app (plain JavaScript
//! modules, no framework, no build step) whose files are embedded in the binary, so an
//! offline edge site needs nothing else. In the browser it calls the same JSON API as `fl`,
//! with the token the user signs in with (kept in the tab's session storage, sent in the
//! `Authorization` header, never in a URL).
//!
//! Its routes are merged beside the API's and share nothing with them: no middleware of the
//! console runs on an API request, and an invocation never touches it. The assets are in
//! `core/console/` (what each holds: `core/console/README.md`).

use std::sync::OnceLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use funless_api::ApiError;
use sha2::{Digest, Sha256};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../console/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the console (the page, its style sheet and its modules).
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("chart.js", JS),
    asset!("metrics.js", JS),
    asset!("upload.js", JS),
    asset!("functions.js", JS),
    asset!("activations.js", JS),
    asset!("workers.js", JS),
    asset!("cluster.js", JS),
];

/// What the page may load and run: its own files only, no inline script, no other origin;
/// nothing may frame it (the API's token is typed into it).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'none'; base-uri 'none'; \
     frame-ancestors 'none'";

/// The console's routes, to merge beside the API's router.
pub fn router() -> Router {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(index))
        .route("/ui/{file}", get(file))
}

/// Bytes of every embedded file together.
pub fn embedded_bytes() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

/// Each file's entity tag: its SHA-256, computed once.
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &hex::encode(Sha256::digest(a.body))[..32]))
            .collect()
    })
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some((i, asset)) = ASSETS.iter().enumerate().find(|(_, a)| a.name == name) else {
        return ApiError::NotFound(format!("the console has no file {name:?}")).into_response();
    };
    let etag = &etags()[i];
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let headers = response.headers_mut();
    // Revalidated on every load (a 304 when unchanged), so an upgraded Core serves its new
    // console at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut request = Request::builder().uri(path);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        router()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn text(name: &str) -> &'static str {
        let asset = ASSETS.iter().find(|a| a.name == name).unwrap();
        std::str::from_utf8(asset.body).unwrap()
    }

    /// Names of local files a text refers to: `src="x"`, `href="x"`, `from "./x"`,
    /// `import("./x")`.
    fn references(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for opener in ["src=\"", "href=\"", "from \"./", "import(\"./"] {
            let mut rest = text;
            while let Some(at) = rest.find(opener) {
                rest = &rest[at + opener.len()..];
                let end = rest.find('"').unwrap();
                let target = &rest[..end];
                if !target.starts_with('#') && !target.is_empty() {
                    found.push(target.trim_start_matches("./").to_string());
                }
                rest = &rest[end..];
            }
        }
        found
    }

    #[test]
    fn every_file_referred_to_is_embedded_and_every_embedded_file_is_used() {
        let mut used = vec!["index.html".to_string()];
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.body).unwrap();
            for target in references(text) {
                assert!(
                    ASSETS.iter().any(|a| a.name == target),
                    "{} refers to {target:?}, which is not embedded",
                    asset.name
                );
                used.push(target);
            }
        }
        for asset in ASSETS {
            assert!(
                used.iter().any(|u| u == asset.name),
                "{} is embedded but nothing refers to it",
                asset.name
            );
        }
        // Every console file in the folder is embedded (none forgotten in the table).
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if name != "README.md" {
                assert!(
                    ASSETS.iter().any(|a| a.name == name),
                    "core/console/{name} is not in ASSETS"
                );
            }
        }
    }

    #[test]
    fn nothing_is_loaded_from_another_origin_and_nothing_runs_inline() {
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.body).unwrap();
            for scheme in ["http://", "https://"] {
                for (at, _) in text.match_indices(scheme) {
                    // SVG's namespace name is a URL that nothing fetches.
                    assert!(
                        text[at..].starts_with("http://www.w3.org/2000/svg"),
                        "{} names another origin at byte {at}",
                        asset.name
                    );
                }
            }
        }
        let page = text("index.html");
        assert!(!page.contains("<script>") && !page.contains(" style="));
        // No inline event handlers (` onclick="...`): the policy would block them anyway.
        for (at, _) in page.match_indices(" on") {
            let attribute: String = page[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            assert!(
                !page[at + 1 + attribute.len()..].starts_with('='),
                "inline handler {attribute}"
            );
        }
        // The token is never put in a URL or in storage that outlives the tab.
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap();
            assert!(!text.contains("localStorage"), "{}", asset.name);
            assert!(!text.contains("innerHTML"), "{} writes HTML", asset.name);
        }
    }

    #[test]
    fn the_console_is_small() {
        // The binary carries these bytes; keep them far below the 1 MB budget.
        assert!(
            embedded_bytes() < 200 * 1024,
            "{} bytes embedded",
            embedded_bytes()
        );
    }

    #[tokio::test]
    async fn files_are_served_with_their_type_and_the_security_headers() {
        let response = get("/ui", None).await;
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(response.headers()[header::LOCATION], "/ui/");

        let response = get("/ui/", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(
            headers[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(&body[..], text("index.html").as_bytes());

        let response = get("/ui/app.js", None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], JS);
        let etag = response.headers()[header::ETAG]
            .to_str()
            .unwrap()
            .to_string();

        // Unchanged: 304 without a body.
        let response = get("/ui/app.js", Some(&etag)).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        assert!(body.is_empty());
        assert_eq!(
            get("/ui/app.js", Some("\"other\"")).await.status(),
            StatusCode::OK
        );
    }

    #[tokio::test]
    async fn an_unknown_file_is_a_404_with_the_api_error_shape() {
        for path in ["/ui/nothing.js", "/ui/..%2Fcore%2Fsrc%2Fconsole.rs"] {
            let response = get(path, None).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert!(
                json["errors"]["detail"]
                    .as_str()
                    .unwrap()
                    .contains("no file"),
                "{json}"
            );
        }
    }
}
