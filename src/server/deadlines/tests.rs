use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

const TIMEOUTS: Timeouts = Timeouts {
    head: Duration::from_millis(100),
    keep_alive: Duration::from_millis(1000),
    send: Duration::from_millis(100),
};

fn pair() -> (
    Deadlines<tokio::io::DuplexStream>,
    tokio::io::DuplexStream,
    Arc<Phase>,
) {
    let (server, client) = tokio::io::duplex(64);
    let phase = Arc::new(Phase::default());
    (
        Deadlines::new(server, phase.clone(), TIMEOUTS),
        client,
        phase,
    )
}

/// Reads until a read fails: that error, and how long it took to come.
async fn read_error(io: &mut Deadlines<tokio::io::DuplexStream>) -> (io::Error, Duration) {
    let started = Instant::now();
    let mut buf = [0u8; 16];
    loop {
        match io.read(&mut buf).await {
            Ok(0) => panic!("end of stream"),
            Ok(_) => {}
            Err(e) => return (e, started.elapsed()),
        }
    }
}

/// The client sends a whole request head and the server reads it.
async fn send_head(
    server: &mut Deadlines<tokio::io::DuplexStream>,
    client: &mut tokio::io::DuplexStream,
) {
    client
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    assert!(server.read(&mut buf).await.expect("read") > 0);
}

#[tokio::test(start_paused = true)]
async fn the_first_head_is_due_within_the_header_timeout() {
    let (mut server, _client, _) = pair();
    let (error, took) = read_error(&mut server).await;
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(took, TIMEOUTS.head);
}

#[tokio::test(start_paused = true)]
async fn between_requests_the_keep_alive_timeout_applies_then_the_header_timeout() {
    let (mut server, mut client, phase) = pair();
    send_head(&mut server, &mut client).await;
    let mut buf = [0u8; 64];
    // The head is complete and the request handled: no deadline here meanwhile.
    let handling = phase.start();
    let wait = tokio::time::timeout(TIMEOUTS.keep_alive * 5, server.read(&mut buf)).await;
    assert!(
        wait.is_err(),
        "no deadline while a request is handled: {wait:?}"
    );
    drop(handling);
    // Answered: idle for far longer than a head may take, within the keep-alive.
    let wait = tokio::time::timeout(TIMEOUTS.keep_alive / 2, server.read(&mut buf)).await;
    assert!(wait.is_err(), "idle is allowed: {wait:?}");
    // The next request begins; its head never finishes.
    client.write_all(b"G").await.expect("write");
    assert_eq!(server.read(&mut buf).await.expect("read"), 1);
    let (error, took) = read_error(&mut server).await;
    assert_eq!(error.to_string(), "request head not received in time");
    assert_eq!(took, TIMEOUTS.head);
}

#[tokio::test(start_paused = true)]
async fn a_request_answered_between_two_reads_counts_as_answered() {
    // Head and body in one read: the socket is not read while the request is
    // handled, and the next read must still see the connection as idle, not as
    // still in the old head.
    let (mut server, mut client, phase) = pair();
    send_head(&mut server, &mut client).await;
    let mut buf = [0u8; 64];
    drop(phase.start());
    let wait = tokio::time::timeout(TIMEOUTS.keep_alive / 2, server.read(&mut buf)).await;
    assert!(wait.is_err(), "idle, not a late head: {wait:?}");
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_closed_after_the_keep_alive_timeout() {
    let (mut server, mut client, phase) = pair();
    send_head(&mut server, &mut client).await;
    let mut buf = [0u8; 64];
    let handling = phase.start();
    let _ = tokio::time::timeout(TIMEOUTS.head, server.read(&mut buf)).await;
    drop(handling);
    let (error, took) = read_error(&mut server).await;
    assert_eq!(error.to_string(), "keep-alive timeout");
    assert_eq!(took, TIMEOUTS.keep_alive);
}

#[tokio::test(start_paused = true)]
async fn a_write_blocked_past_the_send_timeout_fails() {
    let (mut server, _client, _) = pair();
    let started = Instant::now();
    let error = server
        .write_all(&[0u8; 1024])
        .await
        .expect_err("the client reads nothing");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), TIMEOUTS.send);
}
