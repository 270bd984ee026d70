//! The machine's loopback round trip, for `herald bench --mode rtt`: 64 bytes
//! to an echo thread and back over TCP with Nagle off, no broker involved.
//! Request latencies of the broker are compared with it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use crate::cli::CliResult;

const MESSAGE_BYTES: usize = 64;

/// `rounds` round trips, after a warm-up; their durations.
pub(super) fn run(rounds: u64) -> CliResult<Vec<Duration>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut buf = [0u8; MESSAGE_BYTES];
        loop {
            match stream.read_exact(&mut buf) {
                Ok(()) => stream.write_all(&buf)?,
                Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(err) => return Err(err),
            }
        }
    });
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut buf = [7u8; MESSAGE_BYTES];
    let warm_up = (rounds / 10).min(1_000);
    let mut latencies = Vec::with_capacity(rounds as usize);
    for round in 0..warm_up + rounds {
        let started = Instant::now();
        stream.write_all(&buf)?;
        stream.read_exact(&mut buf)?;
        if round >= warm_up {
            latencies.push(started.elapsed());
        }
    }
    drop(stream);
    echo.join().map_err(|_| "the echo thread panicked")??;
    Ok(latencies)
}
