//! `listen`'s server driven in-process: the test owns its shutdown, as the binary owns SIGTERM.

use std::net::SocketAddr;

use tcphb::cmd::listen::{Serve, serve};
use tcphb::report::Format;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[test]
fn serve_answers_pings_until_its_shutdown_completes() {
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let listener = tcphb::sockets::listen(addr, None).unwrap();
    let local = listener.local_addr().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let opts = Serve {
            local,
            strategy: "none".parse().unwrap(),
            kernel: tcphb::sys::kernel_timers(),
            format: Format::Json,
            rst_on_exit: false,
            max_conns: 10,
        };
        let server = tokio::spawn(serve(listener, opts, async {
            let _ = stopped.await;
        }));
        let mut client = tokio::net::TcpStream::connect(local).await.unwrap();
        client.write_all(b"PING 7\n").await.unwrap();
        let mut line = String::new();
        BufReader::new(&mut client)
            .read_line(&mut line)
            .await
            .unwrap();
        assert_eq!(line, "PONG 7\n");
        stop.send(()).unwrap();
        let finished = server.await.unwrap().unwrap();
        assert_eq!(finished.code, tcphb::exit::OK, "a live client is no death");
        let tcphb::report::Report::ListenSummary(summary) = finished.report else {
            panic!("listen returns its summary, not {:?}", finished.report);
        };
        assert_eq!(summary.accepted, 1, "{summary:?}");
    });
}
