//! Issue 13 as observed, scaled down: with a small open-file limit, idle connections to the
//! public port must not take the descriptors the AS listener needs.
//!
//! The limit (`RLIMIT_NOFILE`) is the whole process's, so this file holds one test only: its
//! test binary is a process of its own. The idle "strangers" are in this process too, so the
//! numbers are chosen so that they fit the limit only while the public listener holds at most
//! its cap: 140 client sockets + 20 served + at most 32 being refused + the runtime's few fit
//! in 256, while 140 client sockets + 140 accepted ones do not (then `accept` and `connect` fail with EMFILE, as the
//! AS listener did in production).

#![cfg(unix)]

mod common;

use std::time::Duration;

use common::*;
use gitter_bridge::listen::Limits;
use tokio::net::TcpStream;

const LIMIT: u64 = 256;
const STRANGERS: usize = 140;
const CAP: usize = 20;

fn set_soft_limit(soft: u64) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl), 0);
        rl.rlim_cur = soft as libc::rlim_t;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0);
    }
}

#[test]
fn a_flood_of_the_public_port_leaves_descriptors_for_the_as_listener() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let web = Limits {
            header_timeout: Duration::from_secs(30),
            ..Limits::web(CAP)
        };
        let pair = start(Limits::appservice(64), web).await;
        set_soft_limit(LIMIT);

        let mut strangers = Vec::new();
        let mut flood_failed = None;
        for _ in 0..STRANGERS {
            match TcpStream::connect(pair.web_addr).await {
                Ok(s) => strangers.push(s),
                Err(e) => {
                    flood_failed = Some(e);
                    break;
                }
            }
            // Let the listener take each one, as a real flood paced by the network would.
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        for attempt in 0..3 {
            match get_path(pair.as_addr, "/ping", Duration::from_secs(2)).await {
                Ok(answer) => {
                    assert_eq!(answer, (200, "pong".to_owned()));
                    break;
                }
                Err(e) if attempt == 2 => {
                    panic!("the AS listener did not answer during the flood: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        if let Some(e) = flood_failed {
            panic!(
                "connection {} of the flood failed ({e}): the public listener holds \
                 descriptors past its cap",
                strangers.len() + 1
            );
        }
        drop(strangers);
        pair.stop.send_replace(true);
        for s in pair.servers {
            s.await.unwrap();
        }
    });
}
