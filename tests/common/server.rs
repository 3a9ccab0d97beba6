//! A real llama.cpp `llama-server` on 127.0.0.1 serving the default model, for the remote
//! backend's tests (`make server` builds it; `make test` does that first).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The server binary: `$PONDER_LLAMA_SERVER`, else what scripts/build-server.sh builds.
pub fn binary() -> PathBuf {
    std::env::var_os("PONDER_LLAMA_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::root().join("target/llama-server/bin/llama-server"))
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Spawns `cmd` from a thread that lives as long as the process: the kernel's parent-death signal
/// follows the spawning *thread*, and a test's own thread ends before the process does.
fn spawn_kept(cmd: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::spawn(move || {
            for (mut cmd, reply) in rx {
                let _ = reply.send(cmd.spawn());
            }
        });
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    keeper
        .lock()
        .unwrap()
        .send((cmd, tx))
        .expect("keeper thread");
    rx.recv().expect("keeper thread")
}

/// A running server, killed on drop.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub slots: u32,
    pub log: PathBuf,
}

impl Server {
    /// Starts a server with `slots` parallel slots on a free port and waits until it is ready.
    pub fn start(slots: u32) -> Self {
        Self::start_on(free_port(), slots)
    }

    /// Starts a server on `port` and waits until it is ready (up to two minutes).
    pub fn start_on(port: u16, slots: u32) -> Self {
        let bin = binary();
        assert!(
            bin.exists(),
            "{} is missing: run `make server` (scripts/build-server.sh) to build llama-server",
            bin.display()
        );
        let log = std::env::temp_dir().join(format!(
            "ponder-llama-server-{}-{port}.log",
            std::process::id()
        ));
        let out = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(&bin);
        // The shared server lives in a static, which is never dropped: have the kernel kill the
        // server when the test process ends, however it ends.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.arg("-m")
            .arg(super::model_path())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-c", &(4096 * slots).to_string(), "-np", &slots.to_string()])
            // One thread: several servers and tests share this machine's cores, and llama.cpp's
            // worker threads spin while they wait for each other, so that two multi-threaded
            // servers busy at once on two cores slow each other down many times over.
            .args(["-t", "1", "--no-webui"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out);
        let child =
            spawn_kept(cmd).unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut server = Self {
            child: Some(child),
            port,
            slots,
            log,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        let health = format!("{}/health", self.url());
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();
        loop {
            if agent.get(&health).call().is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "llama-server exited with {status} before it was ready; its log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "llama-server was not ready within 120 s; its log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
