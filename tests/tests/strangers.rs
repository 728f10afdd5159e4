//! Strangers — clients without a client certificate, or without a login — cannot exhaust a
//! real `lifeboat-coordinator serve` process:
//!
//! - 500 `Renew` streams of 4 MiB on one TLS connection without a client certificate leave the
//!   coordinator's peak memory (`VmHWM` in /proc) far below what buffering them would take
//!   (before the fix: from 25 MB to 2 GB);
//! - a slowloris of 1,500 connections trickling HTTP headers, against a coordinator limited to
//!   1,024 open files, leaves fresh HTTP clients and agents served (before the fix: the file
//!   descriptors ran out and nobody was).
//!
//! The bounds asserted are resources, not times: every wait is a generous upper limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use lifeboat_tests::cluster::SimAgent;
use lifeboat_tests::processes::CoordinatorProcess;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// Streams in the flood, and the size of each one's message.
const FLOOD_STREAMS: usize = 500;
const FLOOD_MESSAGE_BYTES: usize = 4 * 1024 * 1024 - 1024;
/// The coordinator's peak memory must stay below this during the flood.
const FLOOD_PEAK_LIMIT_KIB: u64 = 300 * 1024;
/// Connections of the slowloris, and the open-files limit of the coordinator it attacks.
const SLOW_CONNECTIONS: usize = 1_500;
const COORDINATOR_OPEN_FILES: u64 = 1_024;

/// A `/proc/<pid>/status` field in KiB.
fn proc_status_kib(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} missing from /proc/{pid}/status"))
}

fn pid(coordinator: &CoordinatorProcess) -> i32 {
    coordinator
        .process
        .as_ref()
        .and_then(|process| process.pid())
        .expect("running")
        .as_raw()
}

/// A TLS connection to the coordinator that presents no client certificate, speaking HTTP/2.
async fn anonymous_h2(coordinator: &CoordinatorProcess) -> h2::client::SendRequest<Bytes> {
    let ca_pem = std::fs::read_to_string(coordinator.data_dir.join("ca").join("ca.pem")).expect("CA certificate");
    let mut roots = rustls::RootCertStore::empty();
    for cert in lifeboat_shared::tls::certs_from_pem(&ca_pem).expect("CA pem") {
        roots.add(cert).expect("root");
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", coordinator.port))
        .await
        .expect("connect");
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS without a client certificate is allowed (enrollment)");
    let (send, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ended = connection.await;
    });
    send
}

/// Sends one `Renew` of `FLOOD_MESSAGE_BYTES` on its own stream; returns its `grpc-status`
/// (`None` when the stream was reset or refused instead).
async fn renew_stream(send: h2::client::SendRequest<Bytes>, port: u16, chunk: Bytes) -> Option<String> {
    let mut send = send.ready().await.ok()?;
    let request = http::Request::post(format!("https://127.0.0.1:{port}/lifeboat.v1.AgentService/Renew"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let (response, mut body) = send.send_request(request, false).ok()?;
    // A gRPC frame (no compression, the length) around a RenewRequest whose csr_pem fills the
    // rest: the field's tag and a 4-byte varint length, then the characters.
    let payload = FLOOD_MESSAGE_BYTES - 5;
    let mut head = vec![0u8];
    head.extend_from_slice(&u32::try_from(FLOOD_MESSAGE_BYTES).expect("fits").to_be_bytes());
    head.push(0x0a);
    let mut length = payload;
    while length >= 0x80 {
        head.push((length as u8 & 0x7f) | 0x80);
        length >>= 7;
    }
    head.push(length as u8);
    let sender = tokio::spawn(async move {
        body.send_data(Bytes::from(head), false).ok()?;
        let mut left = payload;
        while left > 0 {
            let piece = chunk.slice(..left.min(chunk.len()));
            left -= piece.len();
            // Queued without copying; h2 sends as flow control allows.
            body.send_data(piece, left == 0).ok()?;
        }
        Some(())
    });
    let response = tokio::time::timeout(Duration::from_secs(120), response)
        .await
        .ok()?
        .ok()?;
    sender.abort();
    let status = response
        .headers()
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    if status.is_some() {
        return status;
    }
    let mut body = response.into_body();
    while let Some(frame) = body.data().await {
        let frame = frame.ok()?;
        let _ = body.flow_control().release_capacity(frame.len());
    }
    let trailers = body.trailers().await.ok()??;
    trailers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// Enrolls an in-process agent against a coordinator process.
async fn enroll_agent(coordinator: &CoordinatorProcess, name: &str) -> lifeboat_agent::identity::Identity {
    coordinator
        .enroll_in_memory("pocketos-prod", name)
        .await
        .expect("enroll")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_renew_streams_without_a_certificate_does_not_grow_the_coordinator() {
    let dir = tempfile::tempdir().expect("dir");
    let coordinator = CoordinatorProcess::start(dir.path(), None).await.expect("coordinator");
    let pid = pid(&coordinator);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = proc_status_kib(pid, "VmRSS:");

    let send = anonymous_h2(&coordinator).await;
    let chunk = Bytes::from(vec![b'A'; 64 * 1024]);
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..FLOOD_STREAMS {
        streams.spawn(renew_stream(send.clone(), coordinator.port, chunk.clone()));
    }
    let mut unauthenticated = 0;
    let mut finished = 0;
    while let Some(status) = streams.join_next().await {
        finished += 1;
        if status.expect("stream task").as_deref() == Some("16") {
            unauthenticated += 1;
        }
    }
    let peak = proc_status_kib(pid, "VmHWM:");
    let after = proc_status_kib(pid, "VmRSS:");
    println!("coordinator RSS {before} KiB before, {after} KiB after, peak {peak} KiB ({finished} streams)");
    assert_eq!(finished, FLOOD_STREAMS);
    assert!(unauthenticated > 0, "no stream was told it needs a certificate");
    assert!(
        peak < FLOOD_PEAK_LIMIT_KIB,
        "the coordinator peaked at {peak} KiB (limit {FLOOD_PEAK_LIMIT_KIB} KiB) for a stranger's flood"
    );

    // An agent is still served.
    let identity = enroll_agent(&coordinator, "after-the-flood").await;
    let mut agent = SimAgent::spawn(&coordinator.url, identity);
    assert!(
        agent.connected(Duration::from_secs(30)).await,
        "the agent did not connect"
    );
}

/// Keeps `count` connections to `port` trickling an HTTP request's headers, one header line
/// every second, reconnecting a second after the server closes one, until `stop`. Counts the
/// connections it opened.
fn slowloris(port: u16, count: usize, opened: Arc<AtomicUsize>, stop: CancellationToken) {
    for _ in 0..count {
        let opened = opened.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let connect = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(("127.0.0.1", port)));
                if let Ok(Ok(mut stream)) = connect.await {
                    opened.fetch_add(1, Ordering::Relaxed);
                    let mut line: &[u8] = b"GET / HTTP/1.1\r\nHost: lifeboat\r\n";
                    while !stop.is_cancelled() && stream.write_all(line).await.is_ok() {
                        line = b"X-Slow: 1\r\n";
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_on_http_leaves_fresh_clients_and_agents_served() {
    let dir = tempfile::tempdir().expect("dir");
    let mut coordinator = CoordinatorProcess::configure(dir.path(), None, "").expect("config");
    coordinator.open_files = Some(COORDINATOR_OPEN_FILES);
    coordinator.restart().await.expect("coordinator");
    let identity = enroll_agent(&coordinator, "during-the-slowloris").await;

    let opened = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    slowloris(coordinator.http_port, SLOW_CONNECTIONS, opened.clone(), stop.clone());
    lifeboat_tests::eventually(Duration::from_secs(30), || {
        let opened = opened.load(Ordering::Relaxed);
        async move { opened >= SLOW_CONNECTIONS }
    })
    .await;
    let opened = opened.load(Ordering::Relaxed);
    println!("slow connections opened: {opened} (the coordinator may hold {COORDINATOR_OPEN_FILES} files)");
    assert!(
        opened as u64 > COORDINATOR_OPEN_FILES,
        "the slowloris opened only {opened} connections: no attack"
    );

    // A fresh HTTP client gets its answer while the slowloris goes on.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let probe = http
        .get(format!("http://127.0.0.1:{}/healthz", coordinator.http_port))
        .send()
        .await
        .expect("a fresh HTTP client is served during the slowloris");
    assert_eq!(probe.status(), reqwest::StatusCode::OK);

    // And an agent connects.
    let mut agent = SimAgent::spawn(&coordinator.url, identity);
    assert!(
        agent.connected(Duration::from_secs(30)).await,
        "no agent session during the slowloris:\n{}",
        coordinator
            .process
            .as_ref()
            .map(|process| process.log_text())
            .unwrap_or_default()
    );
    stop.cancel();
}
