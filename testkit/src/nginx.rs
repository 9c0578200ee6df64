//! Debian's nginx serving a directory on the host's 127.0.0.1 (guests on QEMU's user network
//! reach it as 10.0.2.2): a configuration of its own under the suite's work directory (pid, logs,
//! temporary paths), run in the foreground, stopped when dropped. Range requests are nginx's own.
//! The access log records every request with its status and bytes sent, so a suite can tell
//! what the guests fetched. It never touches the machine's nginx configuration or service.

use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Bound on nginx's start (its port answering).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running nginx.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    /// The port on 127.0.0.1.
    pub port: u16,
    /// The access log (`$status $body_bytes_sent "$request" $http_range` per line).
    pub access_log: PathBuf,
    error_log: PathBuf,
}

/// One request of the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// HTTP status.
    pub status: u16,
    /// Body bytes sent.
    pub bytes: u64,
    /// The request line (`GET /v1.img HTTP/1.1`).
    pub request: String,
    /// The Range header, `-` when there was none.
    pub range: String,
}

/// A free TCP port on 127.0.0.1 (bound and released; a race with another process is possible
/// and then shows as that process's refusal to start, naming the port).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Wait until 127.0.0.1:`port` accepts connections, `child` still running; bounded.
pub fn wait_listening(what: &str, child: &mut Child, port: u16, timeout: Duration) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited ({status}) before listening on 127.0.0.1:{port}");
        }
        if Instant::now() > deadline {
            bail!(
                "{what} does not listen on 127.0.0.1:{port} after {} s",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Nginx {
    /// Serve `root` on 127.0.0.1 (a free port), with configuration and logs in `dir`.
    pub fn start(root: &Path, dir: &Path) -> Result<Nginx> {
        let dir = crate::buildenv::fresh_dir(dir)?;
        fs::create_dir_all(dir.join("tmp"))?;
        let port = free_port()?;
        let access_log = dir.join("access.log");
        let error_log = dir.join("error.log");
        let conf = dir.join("nginx.conf");
        let d = dir.display();
        fs::write(
            &conf,
            format!(
                "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{\n  log_format fleet '$status $body_bytes_sent \"$request\" $http_range';\n  \
                 access_log {d}/access.log fleet;\n  client_body_temp_path {d}/tmp/body;\n  \
                 proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fastcgi;\n  \
                 uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n  \
                 default_type application/octet-stream;\n  sendfile on;\n  \
                 server {{\n    listen 127.0.0.1:{port};\n    root {};\n  }}\n}}\n",
                root.display()
            ),
        )?;
        let mut child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("nginx.stderr"))?)
            .spawn()
            .context("cannot start nginx (Debian package nginx; cargo xtask deps)")?;
        if let Err(e) = wait_listening("nginx", &mut child, port, START_TIMEOUT) {
            let _ = child.kill();
            let _ = child.wait();
            let said = fs::read_to_string(dir.join("nginx.stderr")).unwrap_or_default()
                + &fs::read_to_string(&error_log).unwrap_or_default();
            return Err(e.context(format!("nginx said: {}", said.trim())));
        }
        Ok(Nginx {
            child,
            port,
            access_log,
            error_log,
        })
    }

    /// The URL guests on QEMU's user network use for `path` (under the root).
    pub fn guest_url(&self, path: &str) -> String {
        format!("http://10.0.2.2:{}/{path}", self.port)
    }

    /// Every request logged so far.
    pub fn requests(&self) -> Vec<Request> {
        let text = fs::read_to_string(&self.access_log).unwrap_or_default();
        text.lines().filter_map(parse_line).collect()
    }

    /// nginx's error log, for messages.
    pub fn errors(&self) -> String {
        fs::read_to_string(&self.error_log).unwrap_or_default()
    }
}

fn parse_line(line: &str) -> Option<Request> {
    let (status, rest) = line.split_once(' ')?;
    let (bytes, rest) = rest.split_once(' ')?;
    let rest = rest.strip_prefix('"')?;
    let (request, range) = rest.split_once("\" ")?;
    Some(Request {
        status: status.parse().ok()?,
        bytes: bytes.parse().ok()?,
        request: request.to_owned(),
        range: range.trim().to_owned(),
    })
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_lines_parse() {
        assert_eq!(
            parse_line("206 65536 \"GET /fleet-v1.img HTTP/1.1\" bytes=0-65535"),
            Some(Request {
                status: 206,
                bytes: 65536,
                request: "GET /fleet-v1.img HTTP/1.1".into(),
                range: "bytes=0-65535".into()
            })
        );
        assert_eq!(parse_line("garbage"), None);
    }
}
