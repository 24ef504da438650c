//! A peer that speaks broken LDAP: idsync must answer with a clear error and
//! exit 1, never a panic. (No directory server sends malformed BER on
//! purpose, so this one test uses a scripted TCP peer on loopback.)

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;

/// Reads one LDAP message and returns its message id.
fn read_message(s: &mut std::net::TcpStream) -> Option<u8> {
    let mut head = [0u8; 2];
    s.read_exact(&mut head).ok()?;
    let len = if head[1] & 0x80 == 0 {
        head[1] as usize
    } else {
        let n = (head[1] & 0x7f) as usize;
        let mut b = vec![0u8; n];
        s.read_exact(&mut b).ok()?;
        b.iter().fold(0usize, |a, x| (a << 8) | *x as usize)
    };
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    // body: 02 01 <id> ...
    (body.first() == Some(&0x02) && body.get(1) == Some(&0x01)).then(|| body[2])
}

/// Answers the bind correctly, then sends `reply(id)` to the next request.
fn serve(reply: fn(u8) -> Vec<u8>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().take(4) {
            let Ok(mut s) = conn else { return };
            let Some(id) = read_message(&mut s) else {
                continue;
            };
            // BindResponse: success.
            let _ = s.write_all(&[
                0x30, 0x0c, 0x02, 0x01, id, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
            ]);
            if let Some(id) = read_message(&mut s) {
                let _ = s.write_all(&reply(id));
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    });
    port
}

fn run_against(port: u16) -> (i32, String) {
    let home = support::temp_home();
    let out = Command::new(support::idsync_bin())
        .env("IDSYNC_HOME", home.path())
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "1")
        .env("PEER_PW", "pw")
        .arg("-c")
        .arg(format!(
            "connect_ldap(\"ldap://127.0.0.1:{port}\", #{{ bind_dn: \"cn=x\", password: secret(\"PEER_PW\"), timeout: 5 }})"
        ))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn malformed_search_entry_is_a_clear_error() {
    // SearchResultEntry whose attribute list is an OCTET STRING, not a SEQUENCE.
    // Then a SearchResultDone, so the client decodes the entry.
    let port = serve(|id| {
        let mut v = vec![
            0x30, 0x0a, 0x02, 0x01, id, 0x64, 0x05, 0x04, 0x00, 0x04, 0x01, b'A',
        ];
        v.extend([
            0x30, 0x0c, 0x02, 0x01, id, 0x65, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
        ]);
        v
    });
    let (code, err) = run_against(port);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("malformed"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
}

#[test]
fn garbage_bytes_are_a_clear_error() {
    let port = serve(|_| b"this is not BER at all\r\n".to_vec());
    let (code, err) = run_against(port);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("rootDSE") || err.contains("connection"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("internal error"),
        "{err}"
    );
}
