//! Random requests against a real Core with an embedded worker: random methods, paths built
//! from the API's own words and junk, random bodies and content types, with and without
//! tokens. No answer may be a 5xx (other than 503/504, which are about workers), and the Core
//! must serve a normal invocation afterwards. Bounded for CI (`FUNLESS_FUZZ_ITERS`, default
//! 400); `FUNLESS_FUZZ_SEED` replays a run.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Core, CoreOptions, example};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }
}

const WORDS: &[&str] = &[
    "v1",
    "fn",
    "_",
    "hello",
    "admin",
    "subjects",
    "scripts",
    "app",
    "workers",
    "metrics",
    "health",
    "m1",
    "..",
    "%2e%2e",
    "%00",
    "%ff",
    "a%20b",
    "~",
    "_~1",
    "",
    "x",
    "0",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

const JSON_BODIES: &[&str] = &[
    "{}",
    "null",
    "[]",
    "{\"args\":{}}",
    "{\"args\":null}",
    "{\"args\":[1]}",
    "{\"args\":{\"name\":\"\\u0000\"}}",
    "{\"module\":{\"name\":\"m1\"}}",
    "{\"module\":{\"name\":\"\"}}",
    "{\"module\":{\"name\":null}}",
    "{\"subject\":{\"name\":\"s1\"}}",
    "{\"scheduling\":{\"language\":\"app\",\"script\":\"x\"}}",
    "{\"scheduling\":{\"language\":\"cobol\"}}",
    "{\"args\":{\"a\":{\"b\":{\"c\":{\"d\":[[[[[[[[[[1]]]]]]]]]]}}}}",
    "{\"args\"",
    "\u{feff}{}",
    "1e999999",
];

#[test]
fn random_requests_never_get_a_server_error_and_the_core_goes_on() {
    let iterations: u64 = std::env::var("FUNLESS_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let seed: u64 = std::env::var("FUNLESS_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
                | 1
        });
    let mut rng = Rng(seed);
    let core = Core::start(CoreOptions {
        embedded_worker: true,
        ..CoreOptions::default()
    });
    core.wait_for_workers(&["embedded"]);
    let (status, body) = core
        .client()
        .upload("_", "hello", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let hello = example("hello_fl");
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ];

    for i in 0..iterations {
        let segments = 1 + rng.below(4);
        let path: String = (0..segments)
            .map(|_| format!("/{}", rng.pick(WORDS)))
            .collect();
        let method = rng.pick(&methods).clone();
        let client = match rng.below(3) {
            0 => core.client(),
            1 => core.admin(),
            _ => core.client().with_token(&format!("fl_{:x}", rng.next())),
        };
        let (content_type, body) = match rng.below(5) {
            0 => (
                "application/json".to_string(),
                rng.pick(JSON_BODIES).as_bytes().to_vec(),
            ),
            1 => ("application/json".to_string(), rng.bytes(64)),
            2 => {
                let boundary = "B0undary";
                let mut b = Vec::new();
                for _ in 0..rng.below(4) {
                    let name =
                        rng.pick(&["name", "code", "metadata", "file", "wait_for_workers", "x"]);
                    b.extend_from_slice(format!("--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes());
                    match rng.below(3) {
                        0 => b.extend_from_slice(
                            rng.pick(&[
                                "hello",
                                "h2",
                                "true",
                                "{}",
                                "{\"capacity\":-1}",
                                "{\"timeout_ms\":0}",
                            ])
                            .as_bytes(),
                        ),
                        1 => b.extend_from_slice(&hello[..rng.below(hello.len())]),
                        _ => b.extend(rng.bytes(32)),
                    }
                    b.extend_from_slice(b"\r\n");
                }
                if rng.below(2) == 0 {
                    b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
                }
                (format!("multipart/form-data; boundary={boundary}"), b)
            }
            3 => ("text/plain".to_string(), rng.bytes(64)),
            _ => ("application/octet-stream".to_string(), Vec::new()),
        };
        let (status, answer) = client.send(method.clone(), &path, &content_type, body);
        assert!(
            !status.is_server_error()
                || status == StatusCode::SERVICE_UNAVAILABLE
                || status == StatusCode::GATEWAY_TIMEOUT,
            "seed {seed}, iteration {i}: {method} {path} ({content_type}) → {status} {answer}"
        );
    }
    let (status, body) = core
        .client()
        .invoke("_", "hello", json!({ "name": "fuzz" }));
    assert_eq!(status, StatusCode::OK, "seed {seed}: {body}");
    assert!(
        core.process.logs.text().matches("panicked").count() == 0,
        "a handler panicked"
    );
}
