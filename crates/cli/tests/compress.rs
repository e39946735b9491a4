//! The compressed protocol between clients and the SQL router (`CLIENT_COMPRESS`), with real
//! clients: the `mariadb` command-line client (libmariadb) and PHP's mysqli (mysqlnd), text
//! queries, prepared statements and `COM_CHANGE_USER`; the bytes on the wire are counted by a
//! relay between the client and the router, so an uncompressed session cannot pass.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;

/// Forwards every connection on a free loopback port to `to`, counting the bytes that flow
/// back to the client. Returns the port and the counter.
fn counting_relay(to: u16) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let down = Arc::new(AtomicUsize::new(0));
    let counter = down.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let server = TcpStream::connect(("127.0.0.1", to)).unwrap();
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
                let _ = s_out.shutdown(std::net::Shutdown::Write);
            });
            let counter = counter.clone();
            let (mut s_in, mut c_out) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = s_in.read(&mut buf) {
                    if n == 0 || c_out.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    counter.fetch_add(n, Ordering::Relaxed);
                }
                let _ = c_out.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, down)
}

fn mariadb(port: u16, password: &str, compress: bool, sql: &str) -> String {
    let mut cmd = Command::new("mariadb");
    cmd.args(["--no-defaults", "-h127.0.0.1", "-uwordpress", "-N", "-B"])
        .arg(format!("-P{port}"));
    if compress {
        cmd.arg("--compress");
    }
    let out = cmd
        .args(["wordpress", "-e", sql])
        .env("MYSQL_PWD", password)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn compressed_sessions_work_for_text_prepared_and_change_user_and_really_compress() {
    let (c, _) = Cluster::up(
        "apiVersion: hapress.dev/v1alpha1\nkind: WordPressCluster\nmetadata: {name: zip}\nspec:\n  site: {environment: local}\n  web: {replicas: 1}\n",
    );
    let password =
        std::fs::read_to_string(format!("{}/secrets/db-wordpress-password", c.state_dir()))
            .unwrap()
            .trim()
            .to_string();
    // The embedded router's TCP port: databasePort + instances.
    let (relay, down) = counting_relay(c.db_port + 3);
    let big = "SELECT REPEAT('ab', 200000)";

    // The command-line client, compressed: the same answer in a fraction of the bytes.
    down.store(0, Ordering::Relaxed);
    let out = mariadb(relay, &password, true, big);
    assert_eq!(out.trim_end().len(), 400_000);
    let compressed = down.load(Ordering::Relaxed);
    down.store(0, Ordering::Relaxed);
    let out = mariadb(relay, &password, false, big);
    assert_eq!(out.trim_end().len(), 400_000);
    let plain = down.load(Ordering::Relaxed);
    assert!(
        compressed * 10 < plain,
        "compressed {compressed} bytes, uncompressed {plain}"
    );
    // Many small packets in one session (below the size worth compressing), and a write.
    let out = mariadb(
        relay,
        &password,
        true,
        "CREATE TABLE IF NOT EXISTS zip (id INT PRIMARY KEY, v TEXT); REPLACE INTO zip VALUES (1, REPEAT('z', 5000)); SELECT id, LENGTH(v) FROM zip; SELECT 1; SELECT 2;",
    );
    assert_eq!(out, "1\t5000\n1\n2\n");

    // PHP's mysqli (mysqlnd) with MYSQLI_CLIENT_COMPRESS: prepared statements with a large
    // parameter and result, a text query, and COM_CHANGE_USER on the compressed session.
    down.store(0, Ordering::Relaxed);
    let php = format!(
        r#"
$m = mysqli_init();
$m->real_connect('127.0.0.1', 'wordpress', getenv('PW'), 'wordpress', {relay}, null, MYSQLI_CLIENT_COMPRESS) or die('connect');
$s = $m->prepare('SELECT ?, LENGTH(?)');
$p = str_repeat('hapress ', 50000);
$s->bind_param('ss', $p, $p);
$s->execute();
$s->bind_result($a, $n);
$s->fetch();
echo strlen($a), ' ', $n, "\n";
$s->close();
echo $m->query('SELECT COUNT(*) FROM zip')->fetch_row()[0], "\n";
$m->change_user('wordpress', getenv('PW'), 'wordpress') or die('change_user: ' . $m->error);
echo strtok($m->query('SELECT CURRENT_USER()')->fetch_row()[0], '@'), "\n";
"#
    );
    let out = Command::new("php")
        .args(["-r", &php])
        .env("PW", &password)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "400000 400000\n1\nwordpress\n",
        "{}",
        text(&out)
    );
    let php_bytes = down.load(Ordering::Relaxed);
    assert!(
        php_bytes < 100_000,
        "mysqli's 400 KB answer took {php_bytes} bytes: not compressed"
    );
}
