//! nginx as a reverse proxy in front of the mock upstream: a mature C proxy's cost on the same
//! harness, as a second reference beside the forwarder (`--cases …,nginx`).
//!
//! One worker per core, keep-alive connections to the upstream, no access log, no buffering of
//! answers (so streams pass chunk by chunk): the settings a tuned deployment would use.

use crate::process::Launch;
use anyhow::Context as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// nginx's configuration: listening on `127.0.0.1:port`, proxying to `upstream`, every file it
/// writes under `dir` (an absolute path).
pub fn config(dir: &Path, port: u16, upstream: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"daemon off;
master_process on;
worker_processes 2;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/nginx-tmp/body;
  proxy_temp_path {d}/nginx-tmp/proxy;
  fastcgi_temp_path {d}/nginx-tmp/fastcgi;
  uwsgi_temp_path {d}/nginx-tmp/uwsgi;
  scgi_temp_path {d}/nginx-tmp/scgi;
  upstream mock {{ server {upstream}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port};
    location = /health/liveliness {{ return 200 "I'm alive!"; }}
    location / {{
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"#
    )
}

/// How to start `nginx` (the executable at `bin`) in front of `upstream`, its files in
/// `work_dir`.
pub fn launch(bin: &Path, work_dir: &Path, upstream: SocketAddr) -> anyhow::Result<Launch> {
    anyhow::ensure!(
        bin.exists(),
        "{} not found (Debian: apt-get install nginx-light)",
        bin.display()
    );
    let dir = std::fs::canonicalize(work_dir)
        .with_context(|| format!("resolving {}", work_dir.display()))?;
    std::fs::create_dir_all(dir.join("nginx-tmp"))?;
    let port = crate::process::free_port()?;
    let conf: PathBuf = dir.join("nginx.conf");
    std::fs::write(&conf, config(&dir, port, upstream))?;
    Ok(Launch {
        name: "nginx".to_owned(),
        program: bin.to_owned(),
        args: vec![
            "-e".to_owned(),
            "stderr".to_owned(),
            "-p".to_owned(),
            dir.display().to_string(),
            "-c".to_owned(),
            conf.display().to_string(),
        ],
        env: Vec::new(),
        log: dir.join("nginx.log"),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_proxies_to_the_upstream_with_keep_alive_and_no_buffering() {
        let c = config(Path::new("/tmp/w"), 8123, "127.0.0.1:9000".parse().unwrap());
        assert!(c.contains("listen 127.0.0.1:8123;"));
        assert!(c.contains("server 127.0.0.1:9000; keepalive 128;"));
        assert!(c.contains("proxy_buffering off;"));
        assert!(c.contains("proxy_set_header Connection \"\";"));
        assert!(c.contains("pid /tmp/w/nginx.pid;"));
    }
}
