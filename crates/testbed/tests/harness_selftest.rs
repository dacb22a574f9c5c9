//! Self-test of the integration-test harness (tests/support) and of `echo-upstream`, using the
//! Envoy template without the wasm filter, so it needs neither the policy core nor a built
//! `dist/tenantgate.wasm`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{
    admin_get, http_get, http_request, http_request_with_body, pid_exists, read_response,
    render_template, send_raw, stat_value, unresolved_placeholders, Envoy, EnvoyBuilder, Upstream,
};

const NOFILTER: &str = "envoy/envoy-nofilter.yaml.tmpl";

/// Waits briefly for a reaped pid to disappear from /proc (it should be immediate).
fn assert_pid_gone(pid: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while pid_exists(pid) {
        assert!(
            Instant::now() < deadline,
            "{what} (pid {pid}) still exists after drop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn envoy_proxies_to_echo_and_cleans_up() {
    let upstream = Upstream::start();
    let envoy = EnvoyBuilder::new(upstream.port())
        .template(NOFILTER)
        .concurrency(2)
        .start();
    assert_ne!(envoy.listen_port(), 0);
    assert_ne!(envoy.admin_port(), 0);
    assert_ne!(envoy.listen_port(), envoy.admin_port());

    let resp = http_get(
        envoy.listen_port(),
        "/echo/path?q=1",
        &[("x-selftest", "hello"), ("x-multi", "a"), ("x-multi", "b")],
    );
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let json = resp.json();
    assert_eq!(json["method"], "GET");
    assert_eq!(json["path"], "/echo/path?q=1");
    assert_eq!(json["headers"]["x-selftest"], "hello");
    assert_eq!(json["headers"]["x-multi"], "a, b");
    assert_eq!(json["headers"]["host"], "localhost");
    // Envoy adds its own request headers on the way upstream.
    assert!(json["headers"]["x-request-id"].is_string(), "{json}");

    // POST with bodies, then many GETs: the pooled upstream connections must survive them.
    let post = http_request_with_body(
        envoy.listen_port(),
        "POST",
        "/submit",
        "tenant.example",
        &[("content-type", "text/plain")],
        b"some body bytes",
    );
    assert_eq!(post.status, 200, "{post:?}");
    assert_eq!(post.json()["method"], "POST");
    assert_eq!(post.json()["headers"]["host"], "tenant.example");
    let chunked = send_raw(
        envoy.listen_port(),
        b"PUT /chunked HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\
          connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .unwrap();
    assert_eq!(chunked.status, 200, "{chunked:?}");
    assert_eq!(chunked.json()["path"], "/chunked");
    for i in 0..20 {
        let r = http_get(envoy.listen_port(), &format!("/n/{i}"), &[]);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json()["path"], format!("/n/{i}"));
    }

    // HEAD through Envoy: headers only.
    let head = http_request(envoy.listen_port(), "HEAD", "/head", "localhost", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    let stats = envoy.admin_get("/stats");
    assert!(stats.contains("http."), "no http.* stats:\n{stats}");
    assert_eq!(stat_value(&stats, "server.concurrency"), Some(2));
    assert!(stat_value(&stats, "http.ingress_http.downstream_rq_completed").unwrap_or(0) >= 24);
    // Keep-alive towards the upstream: far fewer connections than requests.
    let upstream_cx = stat_value(&stats, "cluster.upstream.upstream_cx_total").unwrap();
    assert!(
        (1..=6).contains(&upstream_cx),
        "upstream connections not reused: {upstream_cx} connections for 24 requests"
    );
    // upstream_rq_<code> stats are created lazily, on first use.
    assert_eq!(stat_value(&stats, "cluster.upstream.upstream_rq_5xx"), None);
    assert!(stat_value(&stats, "cluster.upstream.upstream_rq_200").unwrap_or(0) >= 24);
    let prom = admin_get(envoy.admin_port(), "/stats/prometheus");
    assert!(prom.contains("envoy_http_downstream_rq_total"), "{prom}");

    // Access log: JSON lines with the documented keys; filter state is absent without the filter.
    let entries = envoy.wait_for_access_log(24);
    let first = entries
        .iter()
        .find(|e| e["path"] == "/echo/path?q=1")
        .unwrap_or_else(|| panic!("request not logged: {}", envoy.access_log_text()));
    assert_eq!(first["response_code"], 200);
    assert_eq!(first["method"], "GET");
    for key in ["tenant", "principal", "route", "decision", "reason"] {
        assert!(first[key].is_null(), "{key} should be unset: {first}");
    }
    assert!(!envoy.access_log_text().is_empty());

    let envoy_pid = envoy.pid();
    let upstream_pid = upstream.pid();
    let dir = envoy.dir().to_path_buf();
    assert!(pid_exists(envoy_pid) && pid_exists(upstream_pid));
    drop(envoy);
    drop(upstream);
    assert_pid_gone(envoy_pid, "envoy");
    assert_pid_gone(upstream_pid, "echo-upstream");
    assert!(!dir.exists(), "temp dir {} not removed", dir.display());
}

#[test]
fn invalid_config_is_reported() {
    // A route to a cluster that does not exist is rejected at startup.
    let template = std::fs::read_to_string(support::repo_path(NOFILTER)).unwrap();
    let broken = template.replace("cluster: upstream\n", "cluster: no_such_cluster\n");
    assert_ne!(broken, template);
    let dir = std::env::temp_dir().join(support::unique_name("tenantgate-badtmpl"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broken.yaml.tmpl");
    std::fs::write(&path, broken).unwrap();

    let log = EnvoyBuilder::new(9)
        .template(&path)
        .timeout(Duration::from_secs(30))
        .start_expect_failure();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(log.contains("no_such_cluster"), "unexpected log:\n{log}");
    assert!(log.contains("[harness] envoy exited with"), "{log}");
}

#[test]
fn parallel_envoys_do_not_conflict() {
    let upstream = Upstream::start();
    let a = Envoy::start(EnvoyBuilder::new(upstream.port()).template(NOFILTER));
    let b = Envoy::start(EnvoyBuilder::new(upstream.port()).template(NOFILTER));
    assert_ne!(a.listen_port(), b.listen_port());
    assert_eq!(a.get("/a", &[]).json()["path"], "/a");
    assert_eq!(b.get("/b", &[]).json()["path"], "/b");
}

#[test]
fn echo_upstream_keep_alive_and_bodies() {
    let upstream = Upstream::start();
    let mut stream = TcpStream::connect(("127.0.0.1", upstream.port())).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // Three pipelined requests on one connection: content-length body, chunked body with a
    // trailer and a chunk extension, then a plain GET that asks to close.
    stream
        .write_all(
            b"POST /one HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-Dup: 1\r\nx-dup: 2\r\n\r\nhello\
              PUT /two HTTP/1.1\r\nhost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
              3;ext=1\r\nabc\r\n0\r\nx-trailer: t\r\n\r\n\
              GET /three?x=%2F HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream);
    let one = read_response(&mut reader, false).unwrap();
    assert_eq!(one.status, 200);
    assert!(one.header("connection").is_none(), "{one:?}");
    assert_eq!(
        one.header("content-length"),
        Some(one.body.len().to_string().as_str())
    );
    let j = one.json();
    assert_eq!(j["method"], "POST");
    assert_eq!(j["path"], "/one");
    assert_eq!(j["headers"]["x-dup"], "1, 2");
    assert_eq!(j["headers"]["content-length"], "5");
    let two = read_response(&mut reader, false).unwrap();
    assert_eq!(two.json()["path"], "/two");
    assert_eq!(two.json()["method"], "PUT");
    let three = read_response(&mut reader, false).unwrap();
    assert_eq!(three.json()["path"], "/three?x=%2F");
    assert_eq!(three.header("connection"), Some("close"));

    // HTTP/1.0 without keep-alive closes; malformed requests get 400.
    let r = send_raw(upstream.port(), b"GET /old HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"], serde_json::json!({}));
    let bad = send_raw(upstream.port(), b"NONSENSE\r\n\r\n").unwrap();
    assert_eq!(bad.status, 400);
    let bad_len = send_raw(
        upstream.port(),
        b"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: nope\r\n\r\n",
    )
    .unwrap();
    assert_eq!(bad_len.status, 400);
}

#[test]
fn render_template_substitutes_and_escapes() {
    let out = render_template(
        "a: {{LISTEN_PORT}}\nv: '{{PLUGIN_CONFIG}}'\np: \"{{WASM_PATH}}\"\nq: {{UNKNOWN}}\n",
        &[
            ("LISTEN_PORT", "8080"),
            ("PLUGIN_CONFIG", "{\"name\": \"it's\",\n \"x\": 1}"),
            ("WASM_PATH", "/tmp/it's.wasm"),
        ],
    );
    assert_eq!(
        out,
        "a: 8080\nv: '{\"name\": \"it''s\",  \"x\": 1}'\np: \"/tmp/it's.wasm\"\nq: {{UNKNOWN}}\n"
    );
    assert_eq!(
        unresolved_placeholders(&out),
        vec!["{{UNKNOWN}}".to_string()]
    );

    // Both shipped templates use exactly the documented placeholders.
    for t in ["envoy/envoy.yaml.tmpl", NOFILTER] {
        let text = std::fs::read_to_string(support::repo_path(t)).unwrap();
        let rendered = render_template(
            &text,
            &[
                ("LISTEN_PORT", "1"),
                ("ADMIN_PORT", "2"),
                ("UPSTREAM_PORT", "3"),
                ("POLICY_PORT", "4"),
                ("WASM_PATH", "/x.wasm"),
                ("PLUGIN_CONFIG", "{}"),
                ("ACCESS_LOG_PATH", "/x.log"),
            ],
        );
        assert!(unresolved_placeholders(&rendered).is_empty(), "{t}");
    }
}
