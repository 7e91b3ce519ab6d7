//! Finding the Core: by hand (`POST /v1/admin/nodes`), through DNS (`--core-dns`), and by
//! encrypted multicast gossip (`--gossip`) between network namespaces this test creates.

use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{
    Core, CoreOptions, InNetns, Process, Worker, bin, detail, example, free_port, wait_until,
};

fn invoke_hello(core: &Core, who: &str) -> serde_json::Value {
    let (status, body) = core.client().invoke("_", "hello_fl", json!({"name": who}));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"data": {"payload": format!("Hello {who}!")}}));
    body
}

fn upload_hello(core: &Core) {
    let (status, body) = core
        .client()
        .upload("_", "hello_fl", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[test]
fn a_worker_with_no_way_to_find_the_core_says_which_flags_to_give() {
    let out = Command::new(bin("funless-worker"))
        .args(["--cookie", "c"])
        .env_remove("FUNLESS_CORE")
        .env_remove("FUNLESS_CORE_DNS")
        .env_remove("FUNLESS_GOSSIP")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for flag in ["--core HOST:PORT", "--core-dns NAME:PORT", "--gossip"] {
        assert!(stderr.contains(flag), "{flag} missing from: {stderr}");
    }
    // One way at a time.
    let out = Command::new(bin("funless-worker"))
        .args(["--cookie", "c", "--core", "127.0.0.1:1", "--gossip"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    // Bad values are refused before anything starts.
    let out = Command::new(bin("funless-worker"))
        .args([
            "--cookie",
            "c",
            "--gossip",
            "--gossip-addr",
            "10.0.0.1:45892",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not a multicast address"), "{stderr}");
}

#[test]
fn discovery_settings_are_in_print_config_and_off_by_default() {
    let out = Command::new(bin("funless-core"))
        .args(["--print-config", "--cookie", "c"])
        .env_remove("FUNLESS_GOSSIP")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("gossip = false  # default"), "{text}");
    assert!(
        text.contains("gossip-addr = \"233.252.1.32:45892\"  # default"),
        "{text}"
    );
    assert!(text.contains("# gossip-interface = (none)"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("worker.toml");
    std::fs::write(
        &file,
        "core-dns = \"funless-core.funless.svc:4001\"\ncookie = \"c\"\n",
    )
    .unwrap();
    let out = Command::new(bin("funless-worker"))
        .arg("--print-config")
        .arg("--config")
        .arg(&file)
        .env("FUNLESS_GOSSIP_INTERFACE", "10.1.2.3")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("core-dns = \"funless-core.funless.svc:4001\"  # file"),
        "{text}"
    );
    assert!(
        text.contains("gossip-interface = \"10.1.2.3\"  # environment"),
        "{text}"
    );
    assert!(text.contains("gossip = false  # default"), "{text}");
}

#[test]
fn a_worker_finds_the_core_through_dns() {
    let core = Core::start(CoreOptions::default());
    let name = format!("localhost:{}", core.cluster.port());
    let worker = Worker::start_finding("dns", &core, &["--core-dns", &name], &[]);
    core.wait_for_workers(&["dns"]);
    assert!(
        worker.process.logs.contains("DNS: localhost resolves to"),
        "{}",
        worker.process.logs.text()
    );
    upload_hello(&core);
    invoke_hello(&core, "dns");
}

#[test]
fn the_admin_connects_the_core_to_a_waiting_worker() {
    let core = Core::start(CoreOptions::default());
    let port = free_port();
    let waiting = Worker::start_finding(
        "handjoined",
        &core,
        &["--cluster-port", &port.to_string()],
        &[],
    );
    assert!(
        waiting
            .process
            .logs
            .contains("waiting for the Core to connect"),
        "{}",
        waiting.process.logs.text()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(core.worker_names().is_empty());

    let admin = core.admin();
    let address = format!("127.0.0.1:{port}");
    // Admins only.
    let (status, _) = core
        .client()
        .post_json("/v1/admin/nodes", &json!({ "address": address }));
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Not an address: 400.
    for bad in [
        json!({ "address": "nonsense" }),
        json!({ "address": "127.0.0.1:0" }),
        json!({ "address": ":4001" }),
        json!({ "address": "127.0.0.1:http" }),
        json!({ "addr": address }),
    ] {
        let (status, body) = admin.post_json("/v1/admin/nodes", &bad);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    // Nothing listens there: 502, quickly.
    let closed = format!("127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let (status, body) = admin.post_json("/v1/admin/nodes", &json!({ "address": closed }));
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(detail(&body).contains("cannot reach"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(6));
    // A node with another cookie refuses: 502, and it does not join.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("cookie");
    std::fs::write(&wrong, "not-the-cookie\n").unwrap();
    let other_port = free_port();
    let _other = Worker::start_finding(
        "other",
        &core,
        &["--cluster-port", &other_port.to_string()],
        &["--cookie-file", wrong.to_str().unwrap()],
    );
    let (status, body) = admin.post_json(
        "/v1/admin/nodes",
        &json!({ "address": format!("127.0.0.1:{other_port}") }),
    );
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(detail(&body).contains("refused"), "{body}");

    // The waiting worker joins.
    let (status, body) = admin.post_json("/v1/admin/nodes", &json!({ "address": address }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["data"],
        json!({ "address": address, "node": "handjoined" })
    );
    core.wait_for_workers(&["handjoined"]);
    upload_hello(&core);
    invoke_hello(&core, "by hand");
    // Asking again while it is joined is harmless.
    let (status, body) = admin.post_json("/v1/admin/nodes", &json!({ "address": address }));
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["node"], "handjoined");
    std::thread::sleep(Duration::from_millis(500));
    core.wait_for_workers(&["handjoined"]);
    invoke_hello(&core, "again");
}

/// Runs a command, failing the test with its output when it fails.
fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e} (is iproute2 installed?)"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether two IPv4 prefixes overlap.
fn overlaps(a: (u32, u32), b: (u32, u32)) -> bool {
    let mask = |len: u32| if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let len = a.1.min(b.1);
    a.0 & mask(len) == b.0 & mask(len)
}

fn prefix(text: &str) -> Option<(u32, u32)> {
    let (ip, len) = text.split_once('/').unwrap_or((text, "32"));
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    Some((u32::from(ip), len.parse().ok()?))
}

/// A private LAN of network namespaces: a Core namespace holding a bridge (`br0`,
/// 10.X.Y.1/24) that each worker namespace joins by a veth pair (10.X.Y.N/24), and one veth
/// pair from the root namespace (10.X.Y+1.1/24) to the Core namespace (10.X.Y+1.2/24) so the
/// test reaches the Core's API. Multicast stays on the bridge: only the namespaces have a
/// route for 224.0.0.0/4. Deleted on drop, also when the test fails.
struct Lab {
    core_ns: String,
    worker_ns: Vec<String>,
    root_link: String,
    lan: [u8; 3],
}

impl Lab {
    fn new(workers: usize) -> Self {
        let probe = Command::new("ip").args(["netns", "list"]).output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "this test needs network namespaces (root, iproute2): `ip netns list` failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => {
                panic!("this test needs iproute2's `ip` (apt-get install iproute2) and root: {e}")
            }
        }
        let tag = format!("{:06x}", rand_u32() & 0xff_ffff);
        // A 10.X.Y.0/23 that no route of this machine touches.
        let routes = String::from_utf8_lossy(
            &Command::new("ip")
                .args(["-4", "route", "show", "table", "all"])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned();
        let taken: Vec<(u32, u32)> = routes
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                let first = words.next()?;
                let first = if ["local", "broadcast", "unicast", "multicast"].contains(&first) {
                    words.next()?
                } else {
                    first
                };
                prefix(first)
            })
            .filter(|p| p.1 > 0)
            .collect();
        let lan = (0..1000)
            .map(|_| {
                let r = rand_u32();
                [10u8, 16 + (r % 200) as u8, ((r >> 8) % 127 * 2) as u8]
            })
            .find(|[a, b, c]| {
                let net = (u32::from_be_bytes([*a, *b, *c, 0]), 23);
                !taken.iter().any(|t| overlaps(*t, net))
            })
            .expect("no free 10.x.y.0/23 for the test network");
        let lab = Self {
            core_ns: format!("fl-{tag}-core"),
            worker_ns: (1..=workers).map(|i| format!("fl-{tag}-w{i}")).collect(),
            root_link: format!("fl{tag}"),
            lan,
        };
        let add = Command::new("ip")
            .args(["netns", "add", &lab.core_ns])
            .output()
            .unwrap();
        assert!(
            add.status.success(),
            "cannot create a network namespace (this test needs root): {}",
            String::from_utf8_lossy(&add.stderr)
        );
        lab.build();
        lab
    }

    fn lan_ip(&self, host: u8) -> String {
        let [a, b, c] = self.lan;
        format!("{a}.{b}.{c}.{host}")
    }

    fn uplink_ip(&self, host: u8) -> String {
        let [a, b, c] = self.lan;
        format!("{a}.{b}.{}.{host}", c + 1)
    }

    fn build(&self) {
        let core = self.core_ns.as_str();
        run(&["ip", "-n", core, "link", "set", "lo", "up"]);
        run(&[
            "ip",
            "-n",
            core,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        run(&[
            "ip",
            "-n",
            core,
            "addr",
            "add",
            &format!("{}/24", self.lan_ip(1)),
            "dev",
            "br0",
        ]);
        run(&[
            "ip",
            "-n",
            core,
            "link",
            "set",
            "br0",
            "multicast",
            "on",
            "up",
        ]);
        run(&[
            "ip",
            "-n",
            core,
            "route",
            "add",
            "224.0.0.0/4",
            "dev",
            "br0",
        ]);
        for (i, ns) in self.worker_ns.iter().enumerate() {
            let port = format!("b{}", i + 1);
            run(&["ip", "netns", "add", ns]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            run(&[
                "ip", "-n", core, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", ns,
            ]);
            run(&[
                "ip",
                "-n",
                core,
                "link",
                "set",
                &port,
                "master",
                "br0",
                "multicast",
                "on",
                "up",
            ]);
            run(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/24", self.lan_ip(i as u8 + 2)),
                "dev",
                "eth0",
            ]);
            run(&[
                "ip",
                "-n",
                ns,
                "link",
                "set",
                "eth0",
                "multicast",
                "on",
                "up",
            ]);
            run(&["ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        }
        // The test's way in: root ↔ Core namespace.
        run(&[
            "ip",
            "link",
            "add",
            &self.root_link,
            "type",
            "veth",
            "peer",
            "name",
            "up0",
            "netns",
            core,
        ]);
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", self.root_link),
            "1",
        );
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{}/24", self.uplink_ip(1)),
            "dev",
            &self.root_link,
        ]);
        run(&["ip", "link", "set", &self.root_link, "up"]);
        run(&[
            "ip",
            "-n",
            core,
            "addr",
            "add",
            &format!("{}/24", self.uplink_ip(2)),
            "dev",
            "up0",
        ]);
        run(&["ip", "-n", core, "link", "set", "up0", "up"]);
    }

    /// Where the test reaches the Core.
    fn core_netns(&self) -> InNetns {
        InNetns {
            name: self.core_ns.clone(),
            host: self.uplink_ip(2),
        }
    }

    /// A worker in worker namespace `i` (0-based) finding the Core by gossip.
    fn gossip_worker(
        &self,
        i: usize,
        name: &str,
        cookie: &str,
        cache: &std::path::Path,
        extra: &[&str],
    ) -> Process {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.worker_ns[i]])
            .arg(bin("funless-worker"))
            .args(["--gossip", "--cookie", cookie, "--name", name])
            .args(extra)
            .args(["--report-ms", "200"])
            .arg("--cache-dir")
            .arg(cache);
        Process::spawn(name, command)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth pairs with an end in it.
        for ns in self.worker_ns.iter().chain([&self.core_ns]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.root_link])
            .output();
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish() as u32
}

fn gossip_undecryptable(core: &Core) -> f64 {
    let text = reqwest::blocking::get(format!("{}/metrics", core.url))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("funless_gossip_datagrams{outcome=\"undecryptable\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse().unwrap())
        .unwrap_or(0.0)
}

/// The acceptance check: a Core and Workers in separate network namespaces on one
/// bridge, no address given. The worker with the cookie finds the Core by gossip, joins and
/// runs an invocation, and follows the Core to a new address; the worker with another cookie
/// learns nothing (its datagrams and the Core's do not open on the other side) and never
/// reaches the Core at all.
#[test]
fn gossip_between_network_namespaces_joins_the_right_cookie_only() {
    let lab = Lab::new(2);
    let options = CoreOptions {
        netns: Some(lab.core_netns()),
        extra: vec!["--gossip".into()],
        ..CoreOptions::default()
    };
    let cookie = format!("gossip-cookie-{}", rand_u32());
    let core = Core::start_with_cookie(options.clone(), &cookie);
    let cache = tempfile::tempdir().unwrap();
    // One worker names its interface, the other leaves it to the route.
    let worker = lab.gossip_worker(
        0,
        "gw1",
        &cookie,
        cache.path(),
        &["--gossip-interface", "eth0"],
    );
    let intruder_cache = tempfile::tempdir().unwrap();
    let intruder = lab.gossip_worker(1, "intruder", "not-the-cookie", intruder_cache.path(), &[]);

    core.wait_for_workers_within(&["gw1"], Duration::from_secs(30));
    let announced = format!(
        "gossip: the Core announces {}:{}",
        lab.lan_ip(1),
        core.cluster.port()
    );
    assert!(worker.logs.contains(&announced), "{}", worker.logs.text());
    upload_hello(&core);
    invoke_hello(&core, "gossip");

    // The intruder hears the announcements but cannot open them, and its probes do not
    // open at the Core either.
    wait_until(
        Duration::from_secs(20),
        "the intruder to report datagrams it cannot open",
        || {
            intruder
                .logs
                .contains("ignored gossip datagrams that do not open")
        },
    );
    wait_until(
        Duration::from_secs(20),
        "the Core to count the intruder's probes",
        || gossip_undecryptable(&core) >= 1.0,
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(core.worker_names(), vec!["gw1".to_string()]);
    assert!(
        core.worker_states()
            .iter()
            .all(|(name, _)| name != "intruder"),
        "{:?}",
        core.worker_states()
    );
    for line in ["intruder", "failed authentication", "refused"] {
        assert!(
            !core.process.logs.contains(line),
            "the Core logged {line:?}:\n{}",
            core.process.logs.text()
        );
    }
    assert!(
        !intruder.logs.contains("gossip: the Core announces"),
        "{}",
        intruder.logs.text()
    );
    assert!(
        !intruder.logs.contains("cluster peer authenticated"),
        "{}",
        intruder.logs.text()
    );

    // The Core moves (a new process on another cluster port): the worker follows.
    let old_port = core.cluster.port();
    drop(core);
    let core = Core::start_with_cookie(options, &cookie);
    assert_ne!(core.cluster.port(), old_port);
    core.wait_for_workers_within(&["gw1"], Duration::from_secs(30));
    assert!(
        worker.logs.contains(&format!(
            "gossip: the Core announces {}:{}",
            lab.lan_ip(1),
            core.cluster.port()
        )),
        "{}",
        worker.logs.text()
    );
    upload_hello(&core);
    invoke_hello(&core, "moved");
    assert_eq!(core.worker_names(), vec!["gw1".to_string()]);
}
