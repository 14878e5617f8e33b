//! The pages and the static files: the demo at `/` (with its placeholder
//! filled in), the dashboard at `/admin`, the favicon, and every file under
//! `/assets/` from the list below, each with its content type, an ETag and
//! the security headers (CSP and friends).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::http::{ApiError, ApiPath};
use crate::state::AppState;

/// A file under `web/` compiled into the binary, by its path there.
macro_rules! web_file {
    ($path:literal) => {
        (
            $path,
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/", $path)) as &[u8],
        )
    };
}

/// The pages, with a placeholder the server fills in.
const DEMO_HTML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/index.html"));
const ADMIN_HTML: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/admin.html"));

/// Everything served under `/assets/`. A unit test checks that every file
/// in `web/` is either here or one of the pages, so a new SDK module cannot
/// be forgotten.
static ASSETS: &[(&str, &[u8])] = &[
    web_file!("app.css"),
    web_file!("common.js"),
    web_file!("demo.js"),
    web_file!("admin.js"),
    web_file!("chart.js"),
    web_file!("favicon.svg"),
    web_file!("vendor/presenced-client/away.js"),
    web_file!("vendor/presenced-client/backoff.js"),
    web_file!("vendor/presenced-client/channel-plan.js"),
    web_file!("vendor/presenced-client/channel-view.js"),
    web_file!("vendor/presenced-client/channel.js"),
    web_file!("vendor/presenced-client/client.js"),
    web_file!("vendor/presenced-client/connection.js"),
    web_file!("vendor/presenced-client/emitter.js"),
    web_file!("vendor/presenced-client/errors.js"),
    web_file!("vendor/presenced-client/index.js"),
    web_file!("vendor/presenced-client/jwt.js"),
    web_file!("vendor/presenced-client/options.js"),
    web_file!("vendor/presenced-client/protocol.js"),
    web_file!("vendor/presenced-client/refset.js"),
    web_file!("vendor/presenced-client/requests.js"),
    web_file!("vendor/presenced-client/runtime.js"),
    web_file!("vendor/presenced-client/session-store.js"),
    web_file!("vendor/presenced-client/state-sync.js"),
    web_file!("vendor/presenced-client/throttle.js"),
    web_file!("vendor/presenced-client/token.js"),
    web_file!("vendor/presenced-client/version.js"),
    web_file!("vendor/presenced-client/link/link.js"),
    web_file!("vendor/presenced-client/link/transport.js"),
    web_file!("vendor/presenced-client/share/election.js"),
    web_file!("vendor/presenced-client/share/index.js"),
    web_file!("vendor/presenced-client/share/messages.js"),
    web_file!("vendor/presenced-client/share/shared-link.js"),
    web_file!("vendor/presenced-client/share/tab-leader.js"),
];

/// Files in `web/` that are not served (build configuration).
#[cfg(test)]
const NOT_SERVED: &[&str] = &["tsconfig.vendor.json"];

/// Scripts and styles from this origin only, no inline code, no framing;
/// `connect-src 'self'` covers the same-origin WebSocket.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// FNV-1a: a cheap, stable validator for the embedded files.
fn etag(body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in body {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}-{}\"", body.len())
}

/// A static file with its content type, security headers and an ETag
/// (`Cache-Control: no-cache`: always revalidated, so a new binary's files
/// are picked up at once, and a 304 costs no body).
fn file_response(req: &HeaderMap, path: &str, body: Vec<u8>) -> Response {
    let tag = etag(&body);
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut headers = security_headers();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, v);
    }
    if fresh {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (headers, body).into_response()
    }
}

fn security_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    h
}

pub(super) async fn demo_page(State(state): State<AppState>, req: HeaderMap) -> Response {
    // The page learns whether it can mint tokens without a probe request.
    let flag = if state.settings.values.dev_tokens {
        "true"
    } else {
        "false"
    };
    let html = DEMO_HTML.replace("__DEV_TOKENS__", flag);
    file_response(&req, "index.html", html.into_bytes())
}

pub(super) async fn admin_page(req: HeaderMap) -> Response {
    file_response(&req, "admin.html", ADMIN_HTML.as_bytes().to_vec())
}

pub(super) async fn favicon(req: HeaderMap) -> Response {
    asset_response(&req, "favicon.svg")
}

pub(super) async fn asset(req: HeaderMap, ApiPath(path): ApiPath<String>) -> Response {
    asset_response(&req, &path)
}

fn asset_response(req: &HeaderMap, path: &str) -> Response {
    match ASSETS.iter().find(|(p, _)| *p == path) {
        Some((p, body)) => file_response(req, p, body.to_vec()),
        None => ApiError::not_found("no such asset").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    fn web_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web")
    }

    fn files_under(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files_under(&path, base, out);
            } else {
                let rel = path.strip_prefix(base).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_in_web_is_served() {
        let mut files = Vec::new();
        files_under(&web_dir(), &web_dir(), &mut files);
        for f in files {
            let known = ASSETS.iter().any(|(p, _)| *p == f)
                || f == "index.html"
                || f == "admin.html"
                || NOT_SERVED.contains(&f.as_str());
            assert!(known, "web/{f} is neither served nor listed as not served");
        }
        for (p, _) in ASSETS {
            assert!(web_dir().join(p).is_file(), "web/{p} is missing");
        }
    }

    #[test]
    fn pages_have_the_placeholder_and_load_only_local_modules() {
        assert!(DEMO_HTML.contains("__DEV_TOKENS__"));
        for html in [DEMO_HTML, ADMIN_HTML] {
            assert!(!html.contains("<script>"), "no inline scripts (CSP)");
            assert!(!html.contains(" style="), "no inline styles (CSP)");
            assert!(!html.contains("http://") && !html.contains("https://"));
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("a/b.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("x.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("favicon.svg"), "image/svg+xml");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
