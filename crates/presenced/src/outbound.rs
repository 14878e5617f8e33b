//! Outgoing HTTP requests (webhook deliveries, JWKS fetches): what of them is
//! safe to log. URLs may carry credentials in their user info or query, and
//! error chains may repeat the URL, so neither is logged as it is.

/// `scheme://host[:port]/path` of `url`: no user info, no query.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("");
            match u.port() {
                Some(p) => format!("{}://{host}:{p}{}", u.scheme(), u.path()),
                None => format!("{}://{host}{}", u.scheme(), u.path()),
            }
        }
        Err(_) => "<invalid URL>".to_owned(),
    }
}

/// A short reason for a failed request, without the URL.
pub fn describe_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut root: &dyn std::error::Error = e;
    while let Some(source) = root.source() {
        root = source;
    }
    if std::ptr::addr_eq(root, e as &dyn std::error::Error) {
        kind.to_owned()
    } else {
        format!("{kind}: {root}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_and_queries() {
        assert_eq!(
            redact_url("https://user:pw@idp.example:8443/keys.json?token=abc"),
            "https://idp.example:8443/keys.json"
        );
        assert_eq!(redact_url("http://example.com/h"), "http://example.com/h");
        assert_eq!(redact_url("nonsense"), "<invalid URL>");
    }
}
