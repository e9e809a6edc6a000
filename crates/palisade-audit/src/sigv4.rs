//! AWS Signature Version 4 over HMAC-SHA256 (the whole algorithm; the AWS SDK is out of the
//! build budget). Header signing only: every request this crate sends carries its signature in
//! the `Authorization` header.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// Lower-case hexadecimal of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// SHA-256 of `data`, hex-encoded (the payload hash of a canonical request).
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The signing key for one day, region and service.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    hmac(&k_service, b"aws4_request")
}

/// Percent-encoding as SigV4 wants it: everything but `A-Z a-z 0-9 - _ . ~` (and `/` when
/// `keep_slash`, for paths).
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b'/' if keep_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A request to sign. `query` holds decoded pairs; `headers` must include `host` and
/// `x-amz-date` (and `x-amz-security-token` when there is a session token).
pub struct Request<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Absolute path, not yet encoded.
    pub path: &'a str,
    /// Decoded query pairs.
    pub query: &'a [(String, String)],
    /// Headers to sign (names in any case).
    pub headers: &'a [(String, String)],
    /// The body.
    pub payload: &'a [u8],
}

/// Signs `req`; returns the `Authorization` header value. `amz_date` is `YYYYMMDDTHHMMSSZ`.
pub fn authorization(
    req: &Request<'_>,
    access_key: &str,
    secret: &str,
    region: &str,
    service: &str,
    amz_date: &str,
) -> String {
    let (sig, signed_headers) = signature(req, secret, region, service, amz_date);
    let date = &amz_date[..8.min(amz_date.len())];
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key}/{date}/{region}/{service}/aws4_request, \
         SignedHeaders={signed_headers}, Signature={sig}"
    )
}

/// The canonical request (exposed for the known-answer tests).
pub fn canonical_request(req: &Request<'_>) -> (String, String) {
    let mut query: Vec<(String, String)> = req
        .query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| {
            let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (k.to_ascii_lowercase(), v)
        })
        .collect();
    headers.sort();
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let path = if req.path.is_empty() { "/" } else { req.path };
    let cr = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(path, true),
        query,
        canonical_headers,
        signed,
        sha256_hex(req.payload)
    );
    (cr, signed)
}

/// The signature (hex) and the signed-header list.
pub fn signature(
    req: &Request<'_>,
    secret: &str,
    region: &str,
    service: &str,
    amz_date: &str,
) -> (String, String) {
    let (cr, signed) = canonical_request(req);
    let date = &amz_date[..8.min(amz_date.len())];
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sts = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(cr.as_bytes())
    );
    let key = signing_key(secret, date, region, service);
    (hex(&hmac(&key, sts.as_bytes())), signed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// AWS docs, "Examples of how to derive a signing key": the IAM example's key.
    #[test]
    fn signing_key_known_answer() {
        let k = signing_key(SECRET, "20150830", "us-east-1", "iam");
        assert_eq!(
            hex(&k),
            "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
        );
    }

    /// AWS docs' signing walk-through: `GET /?Action=ListUsers&Version=2010-05-08` to IAM.
    #[test]
    fn iam_list_users_known_answer() {
        let q = h(&[("Action", "ListUsers"), ("Version", "2010-05-08")]);
        let hd = h(&[
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
            ("Host", "iam.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ]);
        let req = Request {
            method: "GET",
            path: "/",
            query: &q,
            headers: &hd,
            payload: b"",
        };
        let (cr, _) = canonical_request(&req);
        assert_eq!(
            sha256_hex(cr.as_bytes()),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let auth = authorization(
            &req,
            "AKIDEXAMPLE",
            SECRET,
            "us-east-1",
            "iam",
            "20150830T123600Z",
        );
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date, \
             Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    /// The SigV4 test suite's `get-vanilla` and `post-vanilla` cases.
    #[test]
    fn test_suite_vanilla() {
        let hd = h(&[
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ]);
        for (method, want) in [
            (
                "GET",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            (
                "POST",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
        ] {
            let req = Request {
                method,
                path: "/",
                query: &[],
                headers: &hd,
                payload: b"",
            };
            let (sig, signed) = signature(&req, SECRET, "us-east-1", "service", "20150830T123600Z");
            assert_eq!(signed, "host;x-amz-date");
            assert_eq!(sig, want, "{method}");
        }
    }

    #[test]
    fn encoding() {
        assert_eq!(uri_encode("a b/c~=", false), "a%20b%2Fc~%3D");
        assert_eq!(uri_encode("/a b/", true), "/a%20b/");
    }
}
