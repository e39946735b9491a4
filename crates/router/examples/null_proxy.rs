//! The cheapest proxy hop this runtime can make, for `bench/router.sh`: every client
//! connection is joined to a new backend connection and bytes are copied both ways, with no
//! parsing, routing or pooling (tokio `copy_bidirectional` on one thread, as the router).
//! It bounds from below what any proxy costs per statement on the same machine.
//!
//! Usage: `null_proxy LISTEN_HOST:PORT BACKEND [BACKEND...]` (BACKEND: `host:port` or a unix
//! socket path). With several backends, client connections go to them in turn: the floor for
//! a proxy that spreads sessions over replicas, as the router's read splitting does.

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream, UnixStream};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, backends @ ..] = &args[..] else {
        usage();
    };
    if backends.is_empty() {
        usage();
    }
    let backends = backends.to_vec();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let l = TcpListener::bind(listen).await?;
            for turn in 0.. {
                let (mut c, _) = l.accept().await?;
                c.set_nodelay(true)?;
                let backend = backends[turn % backends.len()].clone();
                tokio::spawn(async move {
                    if backend.starts_with('/') {
                        if let Ok(mut b) = UnixStream::connect(&backend).await {
                            let _ = copy_bidirectional(&mut c, &mut b).await;
                        }
                    } else if let Ok(mut b) = TcpStream::connect(&backend).await {
                        let _ = b.set_nodelay(true);
                        let _ = copy_bidirectional(&mut c, &mut b).await;
                    }
                });
            }
            Ok(())
        })
}

fn usage() -> ! {
    eprintln!("usage: null_proxy LISTEN_HOST:PORT BACKEND [BACKEND...]");
    std::process::exit(2);
}
