//! Answers that are not the API's: a connection closed with no HTTP answer, and a proxy's
//! 502/504 error page. Both carry a [`NotTheApi`] marker so the gate adds none of the API's
//! headers (`x-request-id`, `openai-*`, `x-ratelimit-*`): a client has only what a real proxy
//! or a reset connection would leave it.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Marks a response the API did not produce; the gate leaves it untouched.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NotTheApi;

/// A response whose body fails at once: hyper then closes the connection before writing the
/// head (the head is only flushed with the body's first chunk), so the client reads nothing at
/// all and sees the connection closed before a message completed.
pub(crate) fn dropped_connection() -> Response {
    let body = Body::from_stream(futures::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "simulated dropped connection",
        ))
    }));
    let mut response = Response::new(body);
    response.extensions_mut().insert(NotTheApi);
    response
}

/// A CDN-style error page: `502 Bad Gateway` or `504 Gateway Time-out` in HTML, with a
/// `server` header and none of OpenAI's.
pub(crate) fn proxy_error(status: StatusCode) -> Response {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let page = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut response = (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=UTF-8"),
            ),
            (header::SERVER, HeaderValue::from_static("cloudflare")),
        ],
        page,
    )
        .into_response();
    response.extensions_mut().insert(NotTheApi);
    response
}
