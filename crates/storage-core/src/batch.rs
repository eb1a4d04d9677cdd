//! Batches of HTTP requests sent as one `multipart/mixed` body (RFC 2046
//! section 5.1), each part one request with `Content-Type:
//! application/http`, and the `multipart/mixed` answer read back, one
//! HTTP response per part: the format of Azure's Blob Batch ("Blob Batch",
//! Azure Storage REST reference) and of the GCS JSON API's batch
//! ("Sending batch requests", Cloud Storage JSON API). Only with the
//! `batch` feature.
//!
//! The multipart answer is parsed by `multer`, each embedded response's
//! status line and headers by `httparse`.

use std::fmt::Write as _;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::{Error, Key, Result};

/// One request of a batch: `method target HTTP/1.1`, then `headers`, no
/// body (the deletes both services batch have none).
#[derive(Debug, Clone)]
pub struct SubRequest {
    /// The part's `Content-ID`, which the answer's part repeats (Azure
    /// as it was sent, GCS as `<response-ID>`).
    pub content_id: String,
    /// The HTTP method, for example `DELETE`.
    pub method: &'static str,
    /// The request target: the URL's path and query, already encoded.
    pub target: String,
    /// The request's headers, in order.
    pub headers: Vec<(String, String)>,
}

/// An encoded batch: the body and the `Content-Type` (with its boundary)
/// to send it with.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// `multipart/mixed; boundary=…`.
    pub content_type: String,
    /// The `multipart/mixed` body.
    pub body: String,
}

/// Encodes `requests` as one `multipart/mixed` body. The boundary is
/// `batch_` and the hex SHA-256 of the parts, so it cannot occur in them.
/// Each part is laid out as in the services' documented examples: the part
/// headers (`Content-Type: application/http`, `Content-Transfer-Encoding:
/// binary`, `Content-ID`), a blank line, the request line and headers, a
/// blank line.
pub fn encode(requests: &[SubRequest]) -> Encoded {
    let parts: Vec<String> = requests.iter().map(part).collect();
    let mut hash = Sha256::new();
    for p in &parts {
        hash.update(p.as_bytes());
    }
    let boundary = format!("batch_{}", hex::encode(hash.finalize()));
    let mut body = String::new();
    for p in &parts {
        let _ = write!(body, "--{boundary}\r\n{p}");
    }
    let _ = write!(body, "--{boundary}--\r\n");
    Encoded {
        content_type: format!("multipart/mixed; boundary={boundary}"),
        body,
    }
}

fn part(request: &SubRequest) -> String {
    let mut out = format!(
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {}\r\n\r\n{} {} HTTP/1.1\r\n",
        request.content_id, request.method, request.target
    );
    for (name, value) in &request.headers {
        let _ = write!(out, "{name}: {value}\r\n");
    }
    out.push_str("\r\n\r\n");
    out
}

/// One response of a batch's answer.
#[derive(Debug, Clone)]
pub struct SubResponse {
    /// The part's `Content-ID`, if it had one.
    pub content_id: Option<String>,
    /// The embedded response's status code.
    pub status: u16,
    /// The embedded response's headers, names lower-case.
    pub headers: Vec<(String, String)>,
    /// The embedded response's body (an error document, or empty).
    pub body: Bytes,
}

impl SubResponse {
    /// The value of header `name` (lower-case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The results of a batch of calls, one per key of `keys`: each key's
/// own where its response came (`Some`), a transient [`Error::Backend`]
/// where the answer had none for it (nothing is known of that call;
/// deletes can be sent again). `what` names the request in messages.
pub fn answered(what: &str, keys: &[Key], results: Vec<Option<Result<()>>>) -> Vec<Result<()>> {
    keys.iter()
        .zip(results)
        .map(|(key, result)| {
            result.unwrap_or_else(|| {
                Err(Error::Backend {
                    transient: true,
                    message: format!("{what}: the answer has no response for the call on {key}"),
                    source: None,
                })
            })
        })
        .collect()
}

/// Most headers read from one embedded response.
const MAX_HEADERS: usize = 64;

/// Reads a batch's answer: `content_type` is the answer's `Content-Type`
/// (`multipart/mixed; boundary=…`), `body` its body. `what` names the
/// request in errors. The responses come in the answer's order.
///
/// # Errors
/// A permanent [`Error::Backend`] when the content type has no boundary,
/// the body is not a well-formed multipart, or a part is not an HTTP
/// response.
pub async fn decode(what: &str, content_type: &str, body: Bytes) -> Result<Vec<SubResponse>> {
    let malformed = |detail: String| Error::Backend {
        transient: false,
        message: format!("{what}: the batch answer is malformed: {detail}"),
        source: None,
    };
    let boundary = boundary(content_type).ok_or_else(|| {
        malformed(format!(
            "content type {content_type:?} is not multipart with a boundary"
        ))
    })?;
    let stream = futures::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut responses = Vec::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return Err(malformed(e.to_string())),
        };
        let content_id = field
            .headers()
            .get("content-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = field.bytes().await.map_err(|e| malformed(e.to_string()))?;
        responses.push(response(content_id, &bytes).map_err(malformed)?);
    }
    Ok(responses)
}

/// The `boundary` parameter of a `multipart/*` content type, quoted or
/// not. Read here rather than by a MIME parser: GCS answers with an
/// unquoted boundary holding `=` (`boundary=batch_pK7JBAk73-E=_AA5eFwv4m2Q=`
/// in "Sending batch requests"), which RFC 2045's grammar requires to be
/// quoted and strict parsers refuse.
fn boundary(content_type: &str) -> Option<String> {
    let mut fields = content_type.split(';');
    let media = fields.next()?.trim();
    if !media
        .get(..10)
        .is_some_and(|t| t.eq_ignore_ascii_case("multipart/"))
    {
        return None;
    }
    fields.find_map(|field| {
        let (name, value) = field.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        (!value.is_empty()).then(|| value.to_owned())
    })
}

/// Parses one part: an HTTP/1.1 response without a transfer encoding
/// (leading blank lines skipped).
fn response(content_id: Option<String>, bytes: &Bytes) -> std::result::Result<SubResponse, String> {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(bytes.len());
    let mut text = bytes.slice(start..);
    // A response without a body often ends with its last header line, the
    // blank line that closes the headers being the CRLF that belongs to
    // the next boundary (RFC 2046 section 5.1.1; both services' documented
    // answers are laid out so): close the headers here.
    if !text.ends_with(b"\r\n\r\n") && text.ends_with(b"\r\n") {
        let mut closed = text.to_vec();
        closed.extend_from_slice(b"\r\n");
        text = Bytes::from(closed);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let head = match parsed.parse(&text) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return Err(format!(
                "part {content_id:?} ends inside its response's headers"
            ));
        }
        Err(e) => return Err(format!("part {content_id:?} is not an HTTP response: {e}")),
    };
    let status = parsed
        .code
        .ok_or_else(|| format!("part {content_id:?} has no status"))?;
    let headers = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).trim().to_owned(),
            )
        })
        .collect();
    Ok(SubResponse {
        content_id,
        status,
        headers,
        body: text.slice(head..),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delete(id: &str, target: &str) -> SubRequest {
        SubRequest {
            content_id: id.to_owned(),
            method: "DELETE",
            target: target.to_owned(),
            headers: vec![("x-ms-date".into(), "Sun, 22 Nov 2026 03:00:00 GMT".into())],
        }
    }

    #[test]
    fn a_batch_is_laid_out_as_the_documented_example() {
        let encoded = encode(&[delete("0", "/c/a"), delete("1", "/c/b")]);
        let boundary = encoded
            .content_type
            .strip_prefix("multipart/mixed; boundary=")
            .expect("the boundary");
        let part = |id: &str, path: &str| {
            format!(
                "--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\
                 Content-ID: {id}\r\n\r\nDELETE {path} HTTP/1.1\r\nx-ms-date: Sun, 22 Nov 2026 03:00:00 GMT\r\n\r\n\r\n"
            )
        };
        assert_eq!(
            encoded.body,
            format!(
                "{}{}--{boundary}--\r\n",
                part("0", "/c/a"),
                part("1", "/c/b")
            )
        );
    }

    #[tokio::test]
    async fn an_answer_gives_each_part_s_status_headers_and_body_in_order() {
        let body = "--b1\r\nContent-Type: application/http\r\nContent-ID: <response-0>\r\n\r\n\
                    HTTP/1.1 204 No Content\r\nX-Request: one\r\n\r\n\r\n\
                    --b1\r\nContent-Type: application/http\r\nContent-ID: <response-1>\r\n\r\n\
                    HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n{\"error\":1}\r\n--b1--\r\n";
        let responses = decode("test", "multipart/mixed; boundary=b1", Bytes::from(body))
            .await
            .expect("decoded");
        type Summary<'a> = (Option<&'a str>, u16, Option<&'a str>, &'a [u8]);
        let summary: Vec<Summary<'_>> = responses
            .iter()
            .map(|r| {
                (
                    r.content_id.as_deref(),
                    r.status,
                    r.header("x-request"),
                    r.body.as_ref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (Some("<response-0>"), 204, Some("one"), &b""[..]),
                (Some("<response-1>"), 404, None, &b"{\"error\":1}"[..]),
            ]
        );
    }

    /// Azure's documented answer: the blank line after the last header is
    /// the CRLF of the next boundary.
    #[tokio::test]
    async fn a_response_whose_headers_end_at_the_boundary_has_an_empty_body() {
        let body = "--b1\r\nContent-Type: application/http\r\nContent-ID: 0\r\n\r\n\
                    HTTP/1.1 202 Accepted\r\nx-ms-request-id: r0\r\n\r\n--b1--";
        let responses = decode("test", "multipart/mixed; boundary=b1", Bytes::from(body))
            .await
            .expect("decoded");
        let summary: Vec<(u16, Option<&str>, usize)> = responses
            .iter()
            .map(|r| (r.status, r.header("x-ms-request-id"), r.body.len()))
            .collect();
        assert_eq!(summary, vec![(202, Some("r0"), 0)]);
    }

    /// The answer of "Sending batch requests" (Cloud Storage JSON API): an
    /// unquoted boundary holding `=`, and a JSON body in the first part.
    #[tokio::test]
    async fn the_documented_gcs_answer_is_read() {
        let body = "--batch_pK7JBAk73-E=_AA5eFwv4m2Q=\r\n\
                    Content-Type: application/http\r\n\
                    Content-ID: <response-b29c5de2-0db4-490b-b421-6a51b598bd22+1>\r\n\r\n\
                    HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\n\
                    Content-Length: 2\r\n\r\n{}\r\n\
                    --batch_pK7JBAk73-E=_AA5eFwv4m2Q=\r\n\
                    Content-Type: application/http\r\n\
                    Content-ID: <response-b29c5de2-0db4-490b-b421-6a51b598bd22+2>\r\n\r\n\
                    HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n\r\n\
                    --batch_pK7JBAk73-E=_AA5eFwv4m2Q=--\r\n";
        for content_type in [
            "multipart/mixed; boundary=batch_pK7JBAk73-E=_AA5eFwv4m2Q=",
            "multipart/mixed; boundary=\"batch_pK7JBAk73-E=_AA5eFwv4m2Q=\"",
        ] {
            let responses = decode("test", content_type, Bytes::from(body))
                .await
                .expect("decoded");
            let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
            assert_eq!(statuses, vec![200, 204], "{content_type}");
        }
    }

    #[tokio::test]
    async fn a_part_that_is_not_a_response_is_a_permanent_error() {
        let body = "--b1\r\nContent-ID: 0\r\n\r\nnot http\r\n--b1--\r\n";
        let err = decode("test", "multipart/mixed; boundary=b1", Bytes::from(body))
            .await
            .expect_err("malformed");
        assert!(
            matches!(
                err,
                Error::Backend {
                    transient: false,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_answer_without_a_boundary_is_a_permanent_error() {
        let err = decode("test", "application/json", Bytes::new())
            .await
            .expect_err("no boundary");
        assert!(
            matches!(
                err,
                Error::Backend {
                    transient: false,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
