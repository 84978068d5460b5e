//! End-to-end harness: the real `oxistack` binary on a fresh data dir,
//! driven by the official `openstack` CLI (python-openstackclient from PyPI,
//! installed once into a virtualenv under the cargo target dir) or plain
//! HTTP. The server is stopped (by its PID) when the `Cloud` is dropped,
//! also when a test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The python-openstackclient release the tests use.
pub const OSC_VERSION: &str = "10.5.0";

pub const ADMIN_PASSWORD: &str = "s3cret-admin-Pw";

fn venv_dir() -> PathBuf {
    match std::env::var("OXISTACK_TEST_VENV") {
        Ok(v) => PathBuf::from(v),
        Err(_) => PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("osc-venv"),
    }
}

/// The `openstack` executable, installing it on first use (under a lock, so
/// parallel tests install once).
pub fn openstack_bin() -> PathBuf {
    let venv = venv_dir();
    let bin = venv.join("bin/openstack");
    if bin.exists() {
        return bin;
    }
    let lock = venv.with_extension("lock");
    let start = Instant::now();
    loop {
        match std::fs::create_dir(&lock) {
            Ok(()) => break,
            Err(_) if bin.exists() => return bin,
            Err(_) if start.elapsed() < Duration::from_secs(600) => {
                std::thread::sleep(Duration::from_millis(500))
            }
            Err(e) => panic!("waiting for the venv lock {}: {e}", lock.display()),
        }
    }
    struct Unlock(PathBuf);
    impl Drop for Unlock {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _unlock = Unlock(lock);
    if !bin.exists() {
        run_ok(Command::new("python3").args(["-m", "venv"]).arg(&venv));
        run_ok(Command::new(venv.join("bin/pip")).args([
            "install",
            "-q",
            &format!("python-openstackclient=={OSC_VERSION}"),
        ]));
    }
    bin
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running cloud on a fresh data dir.
pub struct Cloud {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub url: String,
    child: Option<Child>,
    db_url: Option<String>,
    _db: Option<oxistack_store::test_db::TestDb>,
    extra_env: Vec<(String, String)>,
    virt: &'static str,
    datapath: &'static str,
}

impl Cloud {
    pub fn start() -> Cloud {
        Self::start_with(&[])
    }

    /// Starts a cloud with extra `OXISTACK_*` settings in its environment.
    pub fn start_with(env: &[(&str, &str)]) -> Cloud {
        Self::start_virt("fake", env)
    }

    /// Starts a cloud with the given virt driver (`fake` or `qemu`; qemu
    /// runs under TCG in tests).
    pub fn start_virt(virt: &'static str, env: &[(&str, &str)]) -> Cloud {
        Self::start_full(virt, "fake", env)
    }

    /// Starts a cloud with a virt driver and a network datapath (`linux`
    /// builds real bridges and namespaces: give it a unique
    /// `OXISTACK_PUBLIC_BRIDGE`).
    pub fn start_full(virt: &'static str, datapath: &'static str, env: &[(&str, &str)]) -> Cloud {
        let db = if oxistack_store::test_db::engine_under_test() == oxistack_store::Engine::Postgres
        {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            Some(
                rt.block_on(oxistack_store::test_db::TestDb::new())
                    .expect("test database"),
            )
        } else {
            None
        };
        let port = free_port();
        let mut c = Cloud {
            dir: tempfile::Builder::new()
                .prefix("oxistack-e2e-")
                .tempdir()
                .unwrap(),
            port,
            url: format!("http://127.0.0.1:{port}"),
            child: None,
            db_url: db.as_ref().map(|d| d.url.clone()),
            _db: db,
            extra_env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            virt,
            datapath,
        };
        c.launch();
        c
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_oxistack"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(self.dir.path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--virt")
            .arg(self.virt)
            .arg("--datapath")
            .arg(self.datapath)
            // TCG unless a test asks otherwise (OXISTACK_ACCEL in its env).
            .env("OXISTACK_ACCEL", "tcg")
            .env("OXISTACK_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("OXISTACK_HOST", "e2e-host")
            .env("OXISTACK_HOST_VCPUS", "8")
            .env("OXISTACK_HOST_MEMORY_MB", "32768")
            .env("OXISTACK_HOST_DISK_GB", "500")
            .env("OXISTACK_LOG", "info,sqlx=warn,oxistack_agent=debug")
            .env("OXISTACK_POWER_SYNC_INTERVAL_SECS", "2")
            .stdout(Stdio::from(
                std::fs::File::create(self.dir.path().join("serve.out")).unwrap(),
            ))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.path().join("serve.log"))
                    .unwrap(),
            ));
        if let Some(db) = &self.db_url {
            cmd.arg("--database").arg(db);
        }
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("start oxistack"));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = reqwest::blocking::get(format!("{}/identity/v3", self.url)) {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("oxistack exited at start ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "oxistack did not answer within 60 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether the server process was started and not stopped since.
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(status.success(), "oxistack did not stop cleanly: {status}");
        }
        self.launch();
    }

    /// Runs `openstack ARGS` as the admin of clouds.yaml.
    pub fn os(&self, args: &[&str]) -> Output {
        self.os_as(&Creds::Admin, args)
    }

    pub fn os_as(&self, who: &Creds, args: &[&str]) -> Output {
        let mut cmd = Command::new(openstack_bin());
        cmd.args(args)
            .env("XDG_CACHE_HOME", self.dir.path().join("cache"))
            .env("HOME", self.dir.path());
        for (k, _) in std::env::vars() {
            if k.starts_with("OS_") {
                cmd.env_remove(k);
            }
        }
        match who {
            Creds::Admin => {
                cmd.env("OS_CLIENT_CONFIG_FILE", self.dir.path().join("clouds.yaml"))
                    .env("OS_CLOUD", "oxistack");
            }
            Creds::User {
                user,
                password,
                project,
            } => {
                cmd.env("OS_AUTH_URL", format!("{}/identity/v3", self.url))
                    .env("OS_USERNAME", user)
                    .env("OS_PASSWORD", password)
                    .env("OS_PROJECT_NAME", project)
                    .env("OS_USER_DOMAIN_NAME", "Default")
                    .env("OS_PROJECT_DOMAIN_NAME", "Default")
                    .env("OS_IDENTITY_API_VERSION", "3")
                    .env("OS_CLIENT_CONFIG_FILE", "/dev/null");
            }
        }
        cmd.output().expect("run openstack")
    }

    /// Runs a command that must succeed and returns its JSON output (`-f json` is added).
    pub fn os_json(&self, who: &Creds, args: &[&str]) -> Value {
        let mut a: Vec<&str> = args.to_vec();
        a.extend(["-f", "json"]);
        let out = self.os_as(who, &a);
        assert!(
            out.status.success(),
            "openstack {args:?} failed:\n{}\n--- server log tail ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 30)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "openstack {args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Runs a command that must succeed (no output parsing).
    pub fn os_ok(&self, who: &Creds, args: &[&str]) -> String {
        let out = self.os_as(who, args);
        assert!(
            out.status.success(),
            "openstack {args:?} failed:\n{}\n--- server log tail ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 30)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command that must fail, returning its error output.
    pub fn os_fails(&self, who: &Creds, args: &[&str]) -> String {
        let out = self.os_as(who, args);
        assert!(
            !out.status.success(),
            "openstack {args:?} should have failed but printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Polls `openstack server show` until the status is `want` (bounded).
    pub fn wait_status(&self, who: &Creds, server: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let s = self.os_json(who, &["server", "show", server]);
            if s["status"] == want {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "server {server} stuck in {} (wanted {want})",
                s["status"]
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    // ------------------------------------------------------------ HTTP

    pub fn token(&self, user: &str, password: &str, project: &str) -> String {
        let body = serde_json::json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": user, "domain": {"id": "default"}, "password": password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}}
        }});
        let r = reqwest::blocking::Client::new()
            .post(format!("{}/identity/v3/auth/tokens", self.url))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(
            r.status(),
            201,
            "token for {user}: {}",
            r.text().unwrap_or_default()
        );
        r.headers()["x-subject-token"].to_str().unwrap().to_string()
    }

    /// An HTTP call; returns (status, JSON body or Null, headers).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let client = reqwest::blocking::Client::new();
        let mut req = client.request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.header("X-Auth-Token", t);
        }
        if let Some(b) = body {
            req = req
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        )
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Guests, dnsmasq and metadata proxies outlive the server by design:
        // end the processes of this cloud's own data dir (and nothing else),
        // even when the test failed.
        for pid in pids_naming(&self.dir.path().to_string_lossy()) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
        if std::thread::panicking() {
            eprintln!("--- oxistack log ---\n{}", tail(&self.log(), 80));
        }
    }
}

pub enum Creds {
    Admin,
    User {
        user: String,
        password: String,
        project: String,
    },
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A small valid qcow2 image file made with qemu-img.
pub fn make_qcow2(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    run_ok(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&p)
            .arg("16M"),
    );
    p
}

/// The tiny guest image: `OXISTACK_GUEST_IMAGE`, or built once with
/// tools/build-guest-image into the target dir.
pub fn guest_image() -> PathBuf {
    if let Ok(p) = std::env::var("OXISTACK_GUEST_IMAGE") {
        let p = PathBuf::from(p);
        if p.exists() {
            return p;
        }
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest/tiny.qcow2");
    if !out.exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/build-guest-image");
        run_ok(Command::new(script).arg("tiny").arg(&out));
    }
    out
}

/// PIDs of processes (other than this one) whose command line names `text`.
pub fn pids_naming(text: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if pid != me && String::from_utf8_lossy(&cmd).contains(text) {
            out.push(pid);
        }
    }
    out
}

/// PIDs of QEMU processes whose command line names `uuid`.
pub fn qemu_pids(uuid: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .map(|r| r.trim_start().starts_with('Z'))
            .unwrap_or(false);
        if cmd.starts_with("qemu-system") && cmd.contains(uuid) && !zombie {
            out.push(pid);
        }
    }
    out
}
