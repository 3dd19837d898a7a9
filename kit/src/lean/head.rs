//! Telling a lean call apart from everything else on a connection's first
//! bytes, and parsing its request head with `httparse` under hard limits.
//! Only a head that starts with the call's exact request line is ever
//! parsed here; any other first bytes (the HTTP/2 preface, TLS, another
//! method or path, garbage) are hyper's to judge.

/// The request line of a lean call on `path` (`/pkg.Service/Method`).
pub fn request_line(path: &str) -> Vec<u8> {
    format!("POST {path} HTTP/1.1\r\n").into_bytes()
}

/// Bounds on a request head.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Bytes of the head, request line and blank line included.
    pub max_head_bytes: usize,
    /// Header fields.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 8 * 1024,
            max_headers: 32,
        }
    }
}

/// How the body of the call is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// `content-length` bytes.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
}

/// What the lean path needs of a call's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectHead {
    /// Bytes of the head; the body starts right after.
    pub len: usize,
    /// `authorization`, when sent (a guest sends none).
    pub authorization: Option<String>,
    /// `origin`, for CORS.
    pub origin: Option<String>,
    /// W3C trace context.
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
    /// The body's framing.
    pub body: BodyFraming,
    /// The client accepts gzip-compressed messages (`grpc-accept-encoding`).
    pub accepts_gzip: bool,
    /// `x-forwarded-for` values, in order (trusted only from trusted proxies).
    pub forwarded_for: Vec<String>,
}

/// Why a head is refused, with the HTTP status that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed (400).
    Malformed,
    /// Past the head limits (431).
    TooLarge,
    /// No usable body framing, or both (400: request smuggling is refused, not guessed).
    Framing,
}

impl Refusal {
    /// The HTTP status of the refusal.
    pub fn status(self) -> u16 {
        match self {
            Refusal::Malformed | Refusal::Framing => 400,
            Refusal::TooLarge => 431,
        }
    }
}

/// What the first bytes of a connection are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniffed {
    /// Not a lean Connect: hand every byte to hyper.
    Other,
    /// Could still be one: read more (within the head limit and time).
    Incomplete,
    /// A lean Connect.
    Connect(ConnectHead),
    /// A Connect request line with a head that cannot be served.
    Refused(Refusal),
}

/// Judges `bytes`, the first bytes a connection sent, against the lean
/// call's request line `line` (see [`request_line`]).
pub fn sniff(bytes: &[u8], line: &[u8], limits: HeadLimits) -> Sniffed {
    let seen = bytes.len().min(line.len());
    if bytes[..seen] != line[..seen] {
        return Sniffed::Other;
    }
    if bytes.len() < line.len() {
        return Sniffed::Incomplete;
    }
    let window = &bytes[..bytes.len().min(limits.max_head_bytes)];
    let mut fields = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut request = httparse::Request::new(&mut fields);
    match request.parse(window) {
        Ok(httparse::Status::Complete(len)) => connect_head(&request, len),
        Ok(httparse::Status::Partial) if bytes.len() >= limits.max_head_bytes => Sniffed::Refused(Refusal::TooLarge),
        Ok(httparse::Status::Partial) => Sniffed::Incomplete,
        Err(httparse::Error::TooManyHeaders) => Sniffed::Refused(Refusal::TooLarge),
        Err(_) => Sniffed::Refused(Refusal::Malformed),
    }
}

fn connect_head(request: &httparse::Request<'_, '_>, len: usize) -> Sniffed {
    let mut head = ConnectHead {
        len,
        authorization: None,
        origin: None,
        traceparent: None,
        tracestate: None,
        body: BodyFraming::Length(0),
        accepts_gzip: false,
        forwarded_for: Vec::new(),
    };
    let (mut length, mut chunked, mut binary_grpc_web) = (None, false, false);
    for field in request.headers.iter() {
        let Ok(value) = std::str::from_utf8(field.value) else {
            return Sniffed::Refused(Refusal::Malformed);
        };
        // Optional whitespace is spaces and tabs (RFC 9110), nothing else.
        let value = value.trim_matches([' ', '\t']);
        let name = field.name;
        let once = |slot: &mut Option<String>| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(value.to_owned());
            true
        };
        let fine = if name.eq_ignore_ascii_case("content-type") {
            // Binary gRPC-web only; the text form is hyper's (tonic-web).
            binary_grpc_web = matches!(value, "application/grpc-web" | "application/grpc-web+proto");
            true
        } else if name.eq_ignore_ascii_case("content-length") {
            let parsed = value
                .parse::<u64>()
                .ok()
                .filter(|_| value.bytes().all(|b| b.is_ascii_digit()));
            match (parsed, length) {
                (Some(n), None) => {
                    length = Some(n);
                    true
                }
                _ => return Sniffed::Refused(Refusal::Framing),
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") || chunked {
                return Sniffed::Refused(Refusal::Framing);
            }
            chunked = true;
            true
        } else if name.eq_ignore_ascii_case("authorization") {
            once(&mut head.authorization)
        } else if name.eq_ignore_ascii_case("origin") {
            once(&mut head.origin)
        } else if name.eq_ignore_ascii_case("traceparent") {
            once(&mut head.traceparent)
        } else if name.eq_ignore_ascii_case("tracestate") {
            once(&mut head.tracestate)
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            head.forwarded_for.push(value.to_owned());
            true
        } else if name.eq_ignore_ascii_case("grpc-accept-encoding") {
            head.accepts_gzip |= value.split(',').any(|coding| coding.trim() == "gzip");
            true
        } else {
            true
        };
        if !fine {
            // A credential or origin sent twice: ambiguous, refused.
            return Sniffed::Refused(Refusal::Malformed);
        }
    }
    if !binary_grpc_web {
        return Sniffed::Other;
    }
    head.body = match (length, chunked) {
        (Some(n), false) => BodyFraming::Length(n),
        (None, true) => BodyFraming::Chunked,
        _ => return Sniffed::Refused(Refusal::Framing),
    };
    Sniffed::Connect(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    const CONNECT: &[u8] = b"POST /hubbub.v1.ClientApi/Connect HTTP/1.1\r\n\
        Host: gw:7700\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n\
        Authorization: Bearer abc.def.ghi\r\nOrigin: https://app.example\r\n\
        traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\
        grpc-accept-encoding: identity, gzip\r\nContent-Length: 12\r\n\r\n";

    const CONNECT_LINE: &[u8] = b"POST /hubbub.v1.ClientApi/Connect HTTP/1.1\r\n";

    fn limits() -> HeadLimits {
        HeadLimits::default()
    }

    fn sniff(bytes: &[u8], limits: HeadLimits) -> Sniffed {
        assert_eq!(request_line("/hubbub.v1.ClientApi/Connect"), CONNECT_LINE);
        super::sniff(bytes, CONNECT_LINE, limits)
    }

    #[test]
    fn a_connect_head_is_read_whole() {
        let mut bytes = CONNECT.to_vec();
        bytes.extend_from_slice(b"\0\0\0\0\x07body...");
        let Sniffed::Connect(head) = sniff(&bytes, limits()) else {
            panic!("not a connect: {:?}", sniff(&bytes, limits()));
        };
        assert_eq!(head.len, CONNECT.len());
        assert_eq!(head.authorization.as_deref(), Some("Bearer abc.def.ghi"));
        assert_eq!(head.origin.as_deref(), Some("https://app.example"));
        assert!(head.traceparent.is_some() && head.accepts_gzip);
        assert_eq!(head.body, BodyFraming::Length(12));
    }

    #[test]
    fn everything_else_is_hypers() {
        for other in [
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00",
            b"OPTIONS /hubbub.v1.ClientApi/Connect HTTP/1.1\r\n",
            b"POST /hubbub.v1.ClientApi/JoinRoom HTTP/1.1\r\n",
            b"POST /hubbub.v1.ClientApi/Connect HTTP/1.0\r\n",
            b"GET / HTTP/1.1\r\n",
        ] {
            assert_eq!(
                sniff(other, limits()),
                Sniffed::Other,
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
        // The text form of gRPC-web is tonic-web's.
        let text = String::from_utf8_lossy(CONNECT).replace("application/grpc-web+proto", "application/grpc-web-text");
        assert_eq!(sniff(text.as_bytes(), limits()), Sniffed::Other);
    }

    #[test]
    fn heads_past_the_limits_or_ambiguous_are_refused() {
        let big = [CONNECT_LINE, &b"x-pad: "[..], &[b'a'; 9000][..]].concat();
        assert_eq!(sniff(&big, limits()), Sniffed::Refused(Refusal::TooLarge));
        let many: Vec<u8> = [
            CONNECT_LINE.to_vec(),
            (0..40).flat_map(|i| format!("x-{i}: 1\r\n").into_bytes()).collect(),
            b"\r\n".to_vec(),
        ]
        .concat();
        assert_eq!(sniff(&many, limits()), Sniffed::Refused(Refusal::TooLarge));
        let head = String::from_utf8_lossy(CONNECT).into_owned();
        let both = head.replace(
            "Content-Length: 12\r\n",
            "Content-Length: 12\r\nTransfer-Encoding: chunked\r\n",
        );
        assert_eq!(sniff(both.as_bytes(), limits()), Sniffed::Refused(Refusal::Framing));
        let twice = head.replace("Content-Length: 12\r\n", "Content-Length: 12\r\nContent-Length: 13\r\n");
        assert_eq!(sniff(twice.as_bytes(), limits()), Sniffed::Refused(Refusal::Framing));
        let signed = head.replace("Content-Length: 12", "Content-Length: +12");
        assert_eq!(sniff(signed.as_bytes(), limits()), Sniffed::Refused(Refusal::Framing));
        let two_tokens = head.replace("Origin:", "Authorization: Bearer other\r\nOrigin:");
        assert_eq!(
            sniff(two_tokens.as_bytes(), limits()),
            Sniffed::Refused(Refusal::Malformed)
        );
        let none = head.replace("Content-Length: 12\r\n", "");
        assert_eq!(sniff(none.as_bytes(), limits()), Sniffed::Refused(Refusal::Framing));
    }

    /// Arbitrary bytes never panic, and any head judged in pieces (as a
    /// slow client sends it) ends as judged whole.
    #[test]
    fn arbitrary_bytes_and_arbitrary_splits() {
        let mut rng = StdRng::seed_from_u64(0x6875_6262_7562);
        for _ in 0..20_000 {
            let len = rng.random_range(0..200);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if rng.random_bool(0.5) {
                // Near misses: the right line, then noise.
                bytes = [CONNECT_LINE, &bytes[..]].concat();
            }
            let _ = sniff(&bytes, limits());
        }
        let whole = sniff(CONNECT, limits());
        for cut in 0..CONNECT.len() {
            let early = sniff(&CONNECT[..cut], limits());
            assert!(
                early == Sniffed::Incomplete,
                "a head cut at {cut} is not judged early: {early:?}"
            );
        }
        assert!(matches!(whole, Sniffed::Connect(_)));
        // Mutations of a real head: never a panic, never a Connect with a
        // head longer than the bytes.
        for _ in 0..20_000 {
            let mut bytes = CONNECT.to_vec();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
            if let Sniffed::Connect(head) = sniff(&bytes, limits()) {
                assert!(head.len <= bytes.len());
            }
        }
    }
}
