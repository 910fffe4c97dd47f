//! Test peers in other languages (`tests/peers/`), run as child processes.
//!
//! The peers implement one command line and one control protocol, written down in
//! `tests/peers/README.md` (the contract); this module is the Rust side of it:
//!
//! - [`PeerKind`]: which implementation ([`PeerKind::Go`]: go-libp2p, [`PeerKind::Js`]:
//!   js-libp2p) and what it can do ([`Capabilities`]).
//! - Building on first use, cached under the target directory
//!   (`target/test-peers/go-peer`, `target/test-peers/js/`), rebuilt when a file under
//!   `tests/peers/<kind>` is newer than the cached build. Builds are serialised within a
//!   process by a [`OnceLock`] and across processes by a lock directory, and land by atomic
//!   rename, so parallel test threads and processes never see a half-built peer. A missing
//!   `go`, `node` or `npm` is a panic naming the tool, never a skip.
//! - [`PeerBuilder`]: the contract's options; [`PeerBuilder::spawn`] starts the peer in
//!   control mode and reads its listen address; [`PeerBuilder::run_echo_client`] runs the
//!   seed's `-d` dialer.
//! - [`ExternalPeer`]: one running peer; every control command is a typed async method bounded
//!   by a timeout. A failed command returns a [`PeerError`] that carries the peer's stderr, and
//!   the stderr is printed when a test panics while the peer is alive. The child is killed when
//!   the [`ExternalPeer`] is dropped.
//!
//! Everything here needs a tokio context (the child's pipes and the timeouts use tokio), which
//! [`crate::interop::run`] provides whatever runtime drives our host.

use std::{
    fmt,
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    str::FromStr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::{Duration, Instant, SystemTime},
};

use plait_driver::plait_core::{
    identity::{decode_public_key_protobuf, parse_peer_id, KeyType, Keypair, PeerId, PublicKey},
    multiaddr::{split_p2p, Multiaddr},
};
use plait_driver::HostConfig;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    process::{Child, ChildStdin, ChildStdout, Command},
};

/// How long a peer may take from spawn to its first stdout line (RSA-4096 key generation and
/// Node.js start-up included).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound of commands that move little data (`dial`, `echo`, `ping`, `halfclose`, ...). The
/// peers give up on their own after 30 s, so this leaves room for their `err` answer.
pub const QUICK_TIMEOUT: Duration = Duration::from_secs(45);
/// Bound of `identify` (the peer waits at most 10 s for the exchange).
pub const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound of commands that move a lot of data (`streams`, `bulk`, `sink`, `source`, `perf`).
pub const DATA_TIMEOUT: Duration = Duration::from_secs(300);
/// Bound of `write-until-error` and `read-until-error` (the peer gives up after 30 s).
pub const UNTIL_ERROR_TIMEOUT: Duration = Duration::from_secs(45);
/// Bound of a peer's exit after `quit` or of a `-d` run.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a build may hold the cross-process lock before another process considers it
/// abandoned (a cold go-libp2p build takes about two minutes on two cores).
const STALE_LOCK: Duration = Duration::from_secs(20 * 60);
/// The most stderr kept per peer, in bytes (the tail is kept).
const MAX_STDERR: usize = 256 * 1024;
/// The most stderr shown in an error or on a panic, in bytes (the tail).
const SHOWN_STDERR: usize = 8 * 1024;

/// Pattern period of the contract's byte pattern: byte `i` is `(i * 31 + 7) mod 251`.
pub const PATTERN_PERIOD: u64 = 251;

/// Byte `i` of the contract's pattern.
pub fn pattern_byte(i: u64) -> u8 {
    ((i % PATTERN_PERIOD * 31 + 7) % PATTERN_PERIOD) as u8
}

/// Writes `out.len()` pattern bytes starting at pattern offset `start` into `out`.
pub fn fill_pattern(start: u64, out: &mut [u8]) {
    static PERIOD: OnceLock<[u8; PATTERN_PERIOD as usize]> = OnceLock::new();
    let period = PERIOD.get_or_init(|| std::array::from_fn(|i| pattern_byte(i as u64)));
    let mut offset = (start % PATTERN_PERIOD) as usize;
    let mut rest = out;
    while !rest.is_empty() {
        let n = rest.len().min(period.len() - offset);
        let (head, tail) = rest.split_at_mut(n);
        head.copy_from_slice(&period[offset..offset + n]);
        rest = tail;
        offset = 0;
    }
}

/// The SHA-256 of the first `len` pattern bytes.
pub fn pattern_sha256(len: u64) -> [u8; 32] {
    use sha2::Digest as _;
    let mut hash = sha2::Sha256::new();
    let mut block = vec![0u8; 64 * 1024];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(block.len() as u64) as usize;
        fill_pattern(done, &mut block[..n]);
        hash.update(&block[..n]);
        done += n as u64;
    }
    hash.finalize().into()
}

/// The key type of `key` (from its protobuf encoding).
pub fn key_type_of(key: &PublicKey) -> KeyType {
    decode_public_key_protobuf(&key.encode_protobuf())
        .expect("a key libp2p-identity encoded decodes")
        .0
}

// ---------------------------------------------------------------------------------------------
// Kinds and capabilities

/// Which test peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// go-libp2p v0.52.0 (`tests/peers/go`, built with `go build`).
    Go,
    /// js-libp2p 3.x on Node.js (`tests/peers/js/peer.mjs`, installed with `npm ci`).
    Js,
}

/// A security protocol a peer can be asked to offer (`--security`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerSecurity {
    /// `/tls/1.0.0` (`tls`).
    Tls,
    /// `/noise` (`noise`).
    Noise,
}

impl PeerSecurity {
    /// The contract's name of the protocol.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Tls => "tls",
            Self::Noise => "noise",
        }
    }
}

/// What a kind of peer supports, so one scenario list can run against every kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Whether the peer speaks `/tls/1.0.0` (`--security tls`).
    pub tls: bool,
    /// Whether the peer speaks `/plaintext/2.0.0` (`--insecure`).
    pub plaintext: bool,
    /// The identity key types `--key` accepts.
    pub key_types: &'static [KeyType],
    /// The security protocols the peer offers by default, in its preference order.
    pub default_security: &'static [PeerSecurity],
    /// The agent version the peer announces through identify starts with this.
    pub agent_version_prefix: &'static str,
    /// Closing a connection first half-closes (FIN) every stream on it, so a stream being
    /// read may end cleanly rather than fail (js-libp2p: FIN on each stream, then Go Away).
    pub disconnect_finishes_streams: bool,
    /// The observed address it reports in identify carries `/p2p/<our id>` (js-libp2p).
    pub observed_addr_has_p2p: bool,
}

impl PeerKind {
    /// Every kind.
    pub const ALL: [Self; 2] = [Self::Go, Self::Js];

    /// A short name for messages.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Go => "go-libp2p",
            Self::Js => "js-libp2p",
        }
    }

    /// What this kind supports (README: command line).
    pub const fn capabilities(self) -> Capabilities {
        match self {
            Self::Go => Capabilities {
                tls: true,
                plaintext: true,
                key_types: &[
                    KeyType::Rsa,
                    KeyType::Ed25519,
                    KeyType::Secp256k1,
                    KeyType::Ecdsa,
                ],
                default_security: &[PeerSecurity::Tls, PeerSecurity::Noise],
                agent_version_prefix: "github.com/libp2p/go-libp2p",
                disconnect_finishes_streams: false,
                observed_addr_has_p2p: false,
            },
            Self::Js => Capabilities {
                tls: false,
                plaintext: true,
                key_types: &[KeyType::Rsa, KeyType::Ed25519, KeyType::Secp256k1],
                default_security: &[PeerSecurity::Noise],
                agent_version_prefix: "js-libp2p/",
                disconnect_finishes_streams: true,
                observed_addr_has_p2p: true,
            },
        }
    }

    /// A builder with the contract's defaults (RSA-2048 identity, random, default security,
    /// listening on `127.0.0.1`, any port).
    pub fn builder(self) -> PeerBuilder {
        PeerBuilder::new(self)
    }

    /// Builds the peer if its cached build is missing or older than its sources; blocks.
    /// Call it before starting a timed scenario, since the first build can take minutes.
    ///
    /// # Panics
    ///
    /// If the build tool (`go`, or `node`/`npm`) is missing or the build fails.
    pub fn ensure_built(self) {
        let _ = self.program();
    }

    /// The program and leading arguments that run this peer, building it first if needed.
    fn program(self) -> (PathBuf, Vec<PathBuf>) {
        static GO: OnceLock<PathBuf> = OnceLock::new();
        static JS: OnceLock<PathBuf> = OnceLock::new();
        match self {
            Self::Go => (GO.get_or_init(build_go).clone(), Vec::new()),
            Self::Js => {
                let dir = JS.get_or_init(build_js);
                (PathBuf::from("node"), vec![dir.join("peer.mjs")])
            }
        }
    }
}

impl fmt::Display for PeerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Building

/// Where built peers are cached: `$CARGO_TARGET_DIR/test-peers` (a relative
/// `CARGO_TARGET_DIR` is taken relative to the workspace root), or `<workspace>/target/test-peers`.
pub fn cache_dir() -> PathBuf {
    let workspace = workspace_dir();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace.join(dir)
            }
        }
        _ => workspace.join("target"),
    };
    target.join("test-peers")
}

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("plait-tests lives in the workspace")
        .to_path_buf()
}

/// `tests/peers/<name>`.
fn source_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(name)
}

/// The newest modification time of any file under `dir`, skipping `node_modules`.
fn newest_source(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("test peer sources {}: {e}", d.display()));
        for entry in entries {
            let entry = entry.expect("directory entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                if entry.file_name() != "node_modules" {
                    todo.push(entry.path());
                }
            } else if let Ok(t) = meta.modified() {
                newest = newest.max(t);
            }
        }
    }
    newest
}

/// Whether `built` exists and is at least as new as every source file.
fn up_to_date(built: &Path, sources: &Path) -> bool {
    match std::fs::metadata(built).and_then(|m| m.modified()) {
        Ok(t) => t >= newest_source(sources),
        Err(_) => false,
    }
}

/// Holds the cross-process build lock (a directory, created atomically) while alive.
struct BuildLock(PathBuf);

impl BuildLock {
    fn acquire(path: PathBuf) -> Self {
        let start = Instant::now();
        let mut told = false;
        loop {
            match std::fs::create_dir(&path) {
                Ok(()) => return Self(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    if age.is_some_and(|a| a > STALE_LOCK) {
                        eprintln!("removing stale test-peer build lock {}", path.display());
                        let _ = std::fs::remove_dir(&path);
                        continue;
                    }
                    if !told {
                        eprintln!(
                            "waiting for another process building a test peer ({})",
                            path.display()
                        );
                        told = true;
                    }
                    assert!(
                        start.elapsed() < STALE_LOCK,
                        "test-peer build lock {} held for {STALE_LOCK:?}",
                        path.display()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("creating build lock {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Runs a build step; panics naming `tool` if it is not installed, or with its output if it
/// fails.
fn run_build_step(tool: &str, mut cmd: std::process::Command, what: &str) {
    let output = match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{tool}` was not found on PATH: it is needed to {what} (see tests/peers/README.md \
             and shared/TOOLCHAIN.md); install it, the interop tests do not skip without it"
        ),
        Err(e) => panic!("running `{tool}` to {what}: {e}"),
    };
    if !output.status.success() {
        panic!(
            "`{tool}` failed to {what} ({}):\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// Checks that `tool --version` runs (a clear panic if it is missing).
fn require_tool(tool: &str, version_arg: &str, what: &str) {
    let mut cmd = std::process::Command::new(tool);
    cmd.arg(version_arg);
    run_build_step(tool, cmd, what);
}

/// Builds `tests/peers/go` into `<cache>/go-peer` unless it is up to date.
fn build_go() -> PathBuf {
    let cache = cache_dir();
    let sources = source_dir("go");
    let binary = cache.join("go-peer");
    if up_to_date(&binary, &sources) {
        return binary;
    }
    std::fs::create_dir_all(&cache).expect("create the test-peer cache directory");
    let _lock = BuildLock::acquire(cache.join("go-peer.lock"));
    if up_to_date(&binary, &sources) {
        return binary; // another process built it while we waited
    }
    let what = "build the go-libp2p test peer (tests/peers/go)";
    require_tool("go", "version", what);
    let tmp = cache.join(format!("go-peer.tmp-{}", std::process::id()));
    eprintln!("building the go test peer into {} ...", binary.display());
    let start = Instant::now();
    let mut cmd = std::process::Command::new("go");
    cmd.args(["build", "-buildvcs=false", "-o"])
        .arg(&tmp)
        .arg(".")
        .current_dir(&sources);
    run_build_step("go", cmd, what);
    std::fs::rename(&tmp, &binary).expect("move the built go peer into place");
    eprintln!("built the go test peer in {:.1?}", start.elapsed());
    binary
}

/// Installs `tests/peers/js` (its files, then `npm ci`) into `<cache>/js/` unless it is up to
/// date; returns that directory.
fn build_js() -> PathBuf {
    let cache = cache_dir();
    let sources = source_dir("js");
    let dir = cache.join("js");
    let stamp = dir.join(".plait-installed");
    let what = "run the js-libp2p test peer (tests/peers/js)";
    require_tool("node", "--version", what);
    assert!(
        sources.join("peer.mjs").is_file() && sources.join("package-lock.json").is_file(),
        "the js test peer is missing: expected {} and package-lock.json next to it",
        sources.join("peer.mjs").display()
    );
    if up_to_date(&stamp, &sources) {
        return dir;
    }
    std::fs::create_dir_all(&cache).expect("create the test-peer cache directory");
    let _lock = BuildLock::acquire(cache.join("js.lock"));
    if up_to_date(&stamp, &sources) {
        return dir;
    }
    require_tool(
        "npm",
        "--version",
        "install the js-libp2p test peer (npm ci)",
    );
    let tmp = cache.join(format!("js.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    copy_sources(&sources, &tmp);
    eprintln!("installing the js test peer into {} ...", dir.display());
    let start = Instant::now();
    let mut cmd = std::process::Command::new("npm");
    cmd.args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&tmp);
    run_build_step("npm", cmd, "install the js-libp2p test peer (npm ci)");
    std::fs::write(tmp.join(".plait-installed"), b"").expect("write the install stamp");
    // Directories cannot be renamed over non-empty ones: move the old one away first.
    let old = cache.join(format!("js.old-{}", std::process::id()));
    if dir.exists() {
        std::fs::rename(&dir, &old).expect("move the old js install away");
    }
    std::fs::rename(&tmp, &dir).expect("move the js install into place");
    let _ = std::fs::remove_dir_all(&old);
    eprintln!("installed the js test peer in {:.1?}", start.elapsed());
    dir
}

/// Copies the files under `from` (without `node_modules`) to `to`.
fn copy_sources(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create directory");
    for entry in std::fs::read_dir(from).expect("read the js peer's directory") {
        let entry = entry.expect("directory entry");
        let path = entry.path();
        if entry.file_name() == "node_modules" {
            continue;
        }
        if entry.metadata().expect("metadata").is_dir() {
            copy_sources(&path, &to.join(entry.file_name()));
        } else {
            std::fs::copy(&path, to.join(entry.file_name())).expect("copy a js peer file");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Spawning

/// The contract's command-line options for one peer.
#[derive(Debug, Clone)]
pub struct PeerBuilder {
    kind: PeerKind,
    key: Option<KeyType>,
    rsa_bits: Option<u32>,
    seed: Option<u64>,
    security: Option<Vec<PeerSecurity>>,
    insecure: bool,
    perf: bool,
    listen: bool,
    export_key: bool,
}

/// A unique number per exported key file in this process.
static KEY_FILES: AtomicU64 = AtomicU64::new(0);

impl PeerBuilder {
    fn new(kind: PeerKind) -> Self {
        Self {
            kind,
            key: None,
            rsa_bits: None,
            seed: None,
            security: None,
            insecure: false,
            perf: false,
            listen: true,
            export_key: false,
        }
    }

    /// `--key`: the identity key type (default: the peer's default, RSA).
    pub fn key(mut self, key: KeyType) -> Self {
        self.key = Some(key);
        self
    }

    /// `--rsa-bits`: the RSA modulus size, in bits (default 2048).
    pub fn rsa_bits(mut self, bits: u32) -> Self {
        self.rsa_bits = Some(bits);
        self
    }

    /// `--seed`: a deterministic identity (same seed and key type, same peer id).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// `--security`: the security protocols to offer, in preference order.
    pub fn security(mut self, list: impl IntoIterator<Item = PeerSecurity>) -> Self {
        self.security = Some(list.into_iter().collect());
        self
    }

    /// `--insecure`: `/plaintext/2.0.0` only.
    pub fn insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// `--perf`: also serve `/perf/1.0.0`.
    pub fn perf(mut self, perf: bool) -> Self {
        self.perf = perf;
        self
    }

    /// Whether to listen (`-l 0`; default yes). A peer that does not listen is known by its
    /// exported key (this turns on [`export_key`](Self::export_key)).
    pub fn listen(mut self, listen: bool) -> Self {
        self.listen = listen;
        self
    }

    /// `--export-key`: have the peer write its private key, available afterwards as
    /// [`ExternalPeer::keypair`].
    pub fn export_key(mut self, export: bool) -> Self {
        self.export_key = export;
        self
    }

    /// The kind of peer this builds.
    pub fn kind(&self) -> PeerKind {
        self.kind
    }

    /// The options shared by control mode and the `-d` dialer.
    fn identity_and_security_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.insecure {
            args.push("--insecure".to_owned());
        }
        if let Some(list) = &self.security {
            let names: Vec<&str> = list.iter().map(|s| s.name()).collect();
            args.extend(["--security".to_owned(), names.join(",")]);
        }
        if let Some(seed) = self.seed {
            args.extend(["--seed".to_owned(), seed.to_string()]);
        }
        if let Some(key) = self.key {
            let name = match key {
                KeyType::Rsa => "rsa",
                KeyType::Ed25519 => "ed25519",
                KeyType::Secp256k1 => "secp256k1",
                KeyType::Ecdsa => "ecdsa",
            };
            args.extend(["--key".to_owned(), name.to_owned()]);
        }
        if let Some(bits) = self.rsa_bits {
            args.extend(["--rsa-bits".to_owned(), bits.to_string()]);
        }
        if self.perf {
            args.push("--perf".to_owned());
        }
        args
    }

    fn command(&self, args: &[String]) -> Command {
        let (program, lead) = self.kind.program();
        let mut cmd = Command::new(program);
        cmd.args(lead)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Starts the peer in control mode and waits (at most [`START_TIMEOUT`]) for its listen
    /// address.
    pub async fn spawn(self) -> Result<ExternalPeer, PeerError> {
        let export = self.export_key || !self.listen;
        let mut args = Vec::new();
        if self.listen {
            args.extend(["-l".to_owned(), "0".to_owned()]);
        }
        args.extend(self.identity_and_security_args());
        let key_file = export.then(|| {
            let dir = cache_dir().join("tmp");
            std::fs::create_dir_all(&dir).expect("create the key export directory");
            dir.join(format!(
                "{}-{}-{}.key",
                self.kind.name(),
                std::process::id(),
                KEY_FILES.fetch_add(1, Ordering::Relaxed)
            ))
        });
        if let Some(path) = &key_file {
            args.extend(["--export-key".to_owned(), path.display().to_string()]);
        }
        args.push("--control".to_owned());

        let description = format!("{} {}", self.kind, args.join(" "));
        let mut child = self.command(&args).spawn().map_err(|e| PeerError {
            peer: description.clone(),
            command: "spawn".to_owned(),
            kind: PeerErrorKind::Io(e.to_string()),
            stderr: String::new(),
        })?;
        let stderr = StderrLog::capture(&mut child);
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut peer = ExternalPeer {
            kind: self.kind,
            description,
            child,
            stdin: Some(stdin),
            stdout,
            stderr,
            listen_addr: None,
            peer_id: None,
            identity: None,
            broken: None,
        };
        if self.listen {
            let line = peer.read_line("(listen address)", START_TIMEOUT).await?;
            let addr: Multiaddr = line.parse().map_err(|e| {
                peer.error(
                    "(listen address)",
                    PeerErrorKind::BadAnswer(format!("{line:?}: {e}")),
                )
            })?;
            let (_, id) = split_p2p(&addr);
            let id = id.ok_or_else(|| {
                peer.error(
                    "(listen address)",
                    PeerErrorKind::BadAnswer(format!("{line:?} has no /p2p/")),
                )
            })?;
            peer.listen_addr = Some(addr);
            peer.peer_id = Some(id);
        }
        if let Some(path) = key_file {
            // With -l the key was written before the address was printed; without, wait.
            let identity = wait_for_key(&path, START_TIMEOUT)
                .await
                .map_err(|e| peer.error("(--export-key)", PeerErrorKind::BadAnswer(e)))?;
            let _ = std::fs::remove_file(&path);
            let id = identity.keypair.public().to_peer_id();
            if peer.peer_id.is_some_and(|p| p != id) {
                return Err(peer.error(
                    "(--export-key)",
                    PeerErrorKind::BadAnswer(format!(
                        "exported key is {id}, the listen address says {:?}",
                        peer.peer_id
                    )),
                ));
            }
            peer.peer_id = Some(id);
            peer.identity = Some(identity);
        }
        Ok(peer)
    }

    /// Runs the seed's dialer (`-d ADDR`, no control mode): it dials `addr`, sends
    /// `Hello, world!\n` on `/echo/1.0.0` and prints the reply. Bounded by [`EXIT_TIMEOUT`].
    pub async fn run_echo_client(self, addr: &Multiaddr) -> Result<PeerRun, PeerError> {
        let mut args = vec!["-d".to_owned(), addr.to_string()];
        args.extend(self.identity_and_security_args());
        self.kind.run(&args).await
    }
}

impl PeerKind {
    /// Runs the peer once with exactly `args` (stdin closed) until it exits, at most
    /// [`EXIT_TIMEOUT`].
    pub async fn run(self, args: &[String]) -> Result<PeerRun, PeerError> {
        let description = format!("{self} {}", args.join(" "));
        let fail = |kind| PeerError {
            peer: description.clone(),
            command: "(run to exit)".to_owned(),
            kind,
            stderr: String::new(),
        };
        let (program, lead) = self.program();
        let mut cmd = Command::new(program);
        cmd.args(lead)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| fail(PeerErrorKind::Io(e.to_string())))?;
        match tokio::time::timeout(EXIT_TIMEOUT, child.wait_with_output()).await {
            Err(_) => Err(fail(PeerErrorKind::Timeout(EXIT_TIMEOUT))),
            Ok(Err(e)) => Err(fail(PeerErrorKind::Io(e.to_string()))),
            Ok(Ok(out)) => Ok(PeerRun {
                status: out.status,
                stdout: out.stdout,
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }),
        }
    }
}

/// What a run of a peer to its exit did ([`PeerKind::run`], [`PeerBuilder::run_echo_client`]).
#[derive(Debug)]
pub struct PeerRun {
    /// Its exit status (contract: 0 success, 1 a failed operation, 2 a usage error).
    pub status: ExitStatus,
    /// Everything it printed on stdout (for `-d`: the reply, verbatim).
    pub stdout: Vec<u8>,
    /// Its diagnostics.
    pub stderr: String,
}

/// Reads the key the peer exports to `path`, retrying while the file is missing or not yet
/// complete (the peer writes it without renaming), at most `limit`.
async fn wait_for_key(path: &Path, limit: Duration) -> Result<HostConfig, String> {
    let start = Instant::now();
    loop {
        let why = match std::fs::read(path) {
            Ok(bytes) => match HostConfig::from_private_key_protobuf(&bytes) {
                Ok(config) => return Ok(config),
                Err(e) => format!("{}: {e}", path.display()),
            },
            Err(e) => format!("{}: {e}", path.display()),
        };
        if start.elapsed() > limit {
            return Err(format!("no valid key after {limit:?}: {why}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The last [`SHOWN_STDERR`] bytes of `bytes`, as text.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(SHOWN_STDERR);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// A peer's stderr, read continuously by a background task (so the pipe never fills).
#[derive(Debug, Clone, Default)]
struct StderrLog(Arc<Mutex<Vec<u8>>>);

impl StderrLog {
    fn capture(child: &mut Child) -> Self {
        let log = Self::default();
        if let Some(mut pipe) = child.stderr.take() {
            let sink = log.0.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                while let Ok(n) = pipe.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut all = sink.lock().expect("stderr log");
                    all.extend_from_slice(&buf[..n]);
                    if all.len() > MAX_STDERR {
                        let cut = all.len() - MAX_STDERR;
                        all.drain(..cut);
                    }
                }
            });
        }
        log
    }

    fn tail(&self) -> String {
        tail(&self.0.lock().expect("stderr log"))
    }
}

// ---------------------------------------------------------------------------------------------
// Errors

/// Why a peer operation failed. Its `Display` includes the tail of the peer's stderr.
#[derive(Debug, Clone)]
pub struct PeerError {
    /// The peer (kind and command line).
    pub peer: String,
    /// The command that failed.
    pub command: String,
    /// What went wrong.
    pub kind: PeerErrorKind,
    /// The tail of the peer's stderr when it failed.
    pub stderr: String,
}

/// What went wrong with a peer command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerErrorKind {
    /// The peer answered `err` with this message.
    Refused(String),
    /// No answer within the bound; the peer is unusable afterwards (a late answer would be
    /// taken for the next command's).
    Timeout(Duration),
    /// The peer closed its stdout (it exited or crashed).
    Exited,
    /// An answer that does not follow the contract.
    BadAnswer(String),
    /// A pipe or process error.
    Io(String),
    /// An earlier command timed out, so answers can no longer be matched to commands.
    Broken,
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}`: ", self.peer, self.command)?;
        match &self.kind {
            PeerErrorKind::Refused(m) => write!(f, "err {m}")?,
            PeerErrorKind::Timeout(d) => write!(f, "no answer within {d:?}")?,
            PeerErrorKind::Exited => write!(f, "the peer exited")?,
            PeerErrorKind::BadAnswer(m) => write!(f, "answer outside the contract: {m}")?,
            PeerErrorKind::Io(m) => write!(f, "{m}")?,
            PeerErrorKind::Broken => write!(f, "an earlier command timed out")?,
        }
        write!(f, "\n--- peer stderr (tail)\n{}", self.stderr)
    }
}

impl std::error::Error for PeerError {}

// ---------------------------------------------------------------------------------------------
// A running peer and its commands

/// What `identify PEER` reports the peer learned about PEER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifyReport {
    /// PEER's agent version.
    pub agent_version: String,
    /// PEER's protocol version.
    pub protocol_version: String,
    /// The protocols PEER announced, sorted.
    pub protocols: Vec<String>,
    /// The listen addresses PEER announced, without `/p2p/`.
    pub listen_addrs: Vec<Multiaddr>,
    /// The address PEER said it sees the reporting peer at; `None` if it said nothing.
    pub observed_addr: Option<Multiaddr>,
    /// PEER's key type.
    pub public_key_type: KeyType,
}

/// How `read-until-error` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadEnd {
    /// A clean end of stream.
    Eof,
    /// A read failed (reset or connection closed).
    Error,
}

/// One running test peer in control mode. Killed on drop.
pub struct ExternalPeer {
    kind: PeerKind,
    description: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: StderrLog,
    listen_addr: Option<Multiaddr>,
    peer_id: Option<PeerId>,
    identity: Option<HostConfig>,
    broken: Option<String>,
}

impl fmt::Debug for ExternalPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalPeer")
            .field("peer", &self.description)
            .field("listen_addr", &self.listen_addr)
            .finish_non_exhaustive()
    }
}

impl Drop for ExternalPeer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- stderr of {} (tail)\n{}",
                self.description,
                self.stderr.tail()
            );
        }
        // kill_on_drop(true) kills the child when `child` drops.
    }
}

impl ExternalPeer {
    /// Which implementation this is.
    pub fn kind(&self) -> PeerKind {
        self.kind
    }

    /// The peer's id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id.expect("a spawned peer has a peer id")
    }

    /// The full listen address the peer printed (`/ip4/127.0.0.1/tcp/PORT/p2p/ID`).
    ///
    /// # Panics
    ///
    /// If the peer was built with [`PeerBuilder::listen`]`(false)`.
    pub fn listen_addr(&self) -> Multiaddr {
        self.listen_addr
            .clone()
            .expect("the peer was started without -l")
    }

    /// The peer's private key, if it was built with [`PeerBuilder::export_key`].
    pub fn keypair(&self) -> Option<&Keypair> {
        self.identity.as_ref().map(|config| &config.keypair)
    }

    /// The peer's identity as a host configuration of ours, loaded from the key it exported
    /// with [`HostConfig::from_private_key_protobuf`] (if built with
    /// [`PeerBuilder::export_key`]).
    pub fn identity(&self) -> Option<&HostConfig> {
        self.identity.as_ref()
    }

    /// The tail of what the peer wrote to stderr so far.
    pub fn stderr_tail(&self) -> String {
        self.stderr.tail()
    }

    /// The OS process id of the peer, if it is still running.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    fn error(&self, command: &str, kind: PeerErrorKind) -> PeerError {
        let e = PeerError {
            peer: self.description.clone(),
            command: command.to_owned(),
            kind,
            stderr: self.stderr.tail(),
        };
        eprintln!("{e}");
        e
    }

    async fn read_line(&mut self, command: &str, limit: Duration) -> Result<String, PeerError> {
        let mut line = String::new();
        match tokio::time::timeout(limit, self.stdout.read_line(&mut line)).await {
            Err(_) => {
                self.broken = Some(command.to_owned());
                Err(self.error(command, PeerErrorKind::Timeout(limit)))
            }
            Ok(Err(e)) => Err(self.error(command, PeerErrorKind::Io(e.to_string()))),
            Ok(Ok(0)) => {
                // Give the stderr reader a moment to collect the last words.
                tokio::time::sleep(Duration::from_millis(100)).await;
                Err(self.error(command, PeerErrorKind::Exited))
            }
            Ok(Ok(_)) => Ok(line.trim_end_matches(['\n', '\r']).to_owned()),
        }
    }

    /// Sends one command line and returns the text after `ok` (empty for a bare `ok`).
    pub async fn command(&mut self, line: &str, limit: Duration) -> Result<String, PeerError> {
        if self.broken.is_some() {
            return Err(self.error(line, PeerErrorKind::Broken));
        }
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(self.error(line, PeerErrorKind::Exited));
        };
        let write = async {
            stdin.write_all(line.as_bytes()).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        };
        if let Err(e) = write.await {
            return Err(self.error(line, PeerErrorKind::Io(e.to_string())));
        }
        let answer = self.read_line(line, limit).await?;
        if answer == "ok" {
            Ok(String::new())
        } else if let Some(rest) = answer.strip_prefix("ok ") {
            Ok(rest.to_owned())
        } else if let Some(rest) = answer.strip_prefix("err") {
            Err(self.error(line, PeerErrorKind::Refused(rest.trim_start().to_owned())))
        } else {
            Err(self.error(line, PeerErrorKind::BadAnswer(answer)))
        }
    }

    fn bad(&self, command: &str, what: String) -> PeerError {
        self.error(command, PeerErrorKind::BadAnswer(what))
    }

    fn parse<T: FromStr>(&self, command: &str, text: &str) -> Result<T, PeerError>
    where
        T::Err: fmt::Display,
    {
        text.parse()
            .map_err(|e| self.bad(command, format!("{text:?}: {e}")))
    }

    fn parse_sha256(&self, command: &str, text: &str) -> Result<[u8; 32], PeerError> {
        let bytes =
            decode_hex(text).ok_or_else(|| self.bad(command, format!("{text:?} is not hex")))?;
        bytes
            .try_into()
            .map_err(|_| self.bad(command, format!("{text:?} is not 32 bytes")))
    }

    /// `dial MULTIADDR`: connects; returns the peer id the connection authenticated.
    pub async fn dial(&mut self, addr: &Multiaddr) -> Result<PeerId, PeerError> {
        let line = format!("dial {addr}");
        let answer = self.command(&line, QUICK_TIMEOUT).await?;
        parse_peer_id(&answer).map_err(|e| self.bad(&line, format!("{answer:?}: {e}")))
    }

    /// `echo PEER`: the seed's echo on a new stream; returns the reply.
    pub async fn echo(&mut self, peer: PeerId) -> Result<Vec<u8>, PeerError> {
        let line = format!("echo {peer}");
        let answer = self.command(&line, QUICK_TIMEOUT).await?;
        decode_hex(&answer).ok_or_else(|| self.bad(&line, format!("{answer:?} is not hex")))
    }

    /// `ping PEER`: one ping; returns the round-trip time the peer measured.
    pub async fn ping(&mut self, peer: PeerId) -> Result<Duration, PeerError> {
        let line = format!("ping {peer}");
        let answer = self.command(&line, QUICK_TIMEOUT).await?;
        let micros: u64 = self.parse(&line, &answer)?;
        Ok(Duration::from_micros(micros))
    }

    /// `identify PEER`: what identify with PEER taught the peer.
    pub async fn identify(&mut self, peer: PeerId) -> Result<IdentifyReport, PeerError> {
        let line = format!("identify {peer}");
        let answer = self.command(&line, IDENTIFY_TIMEOUT).await?;
        parse_identify(&answer).map_err(|e| self.bad(&line, format!("{e}: {answer}")))
    }

    /// `streams PEER N SIZE`: N concurrent echo-all streams of SIZE bytes each, checked by
    /// the peer.
    pub async fn streams(&mut self, peer: PeerId, n: usize, size: u64) -> Result<(), PeerError> {
        let line = format!("streams {peer} {n} {size}");
        self.expect_bare_ok(&line, DATA_TIMEOUT).await
    }

    /// `bulk PEER SIZE`: SIZE pattern bytes through PEER's echo-all, checked by the peer;
    /// returns the SHA-256 of what came back.
    pub async fn bulk(&mut self, peer: PeerId, size: u64) -> Result<[u8; 32], PeerError> {
        let line = format!("bulk {peer} {size}");
        let answer = self.command(&line, DATA_TIMEOUT).await?;
        self.parse_sha256(&line, &answer)
    }

    /// `sink PEER SIZE`: SIZE pattern bytes into PEER's sink, whose count and hash the peer
    /// checked; returns the hash.
    pub async fn sink(&mut self, peer: PeerId, size: u64) -> Result<[u8; 32], PeerError> {
        let line = format!("sink {peer} {size}");
        let answer = self.command(&line, DATA_TIMEOUT).await?;
        self.parse_sha256(&line, &answer)
    }

    /// `source PEER SIZE`: SIZE bytes from PEER's source, checked against the pattern by the
    /// peer; returns their SHA-256.
    pub async fn source(&mut self, peer: PeerId, size: u64) -> Result<[u8; 32], PeerError> {
        let line = format!("source {peer} {size}");
        let answer = self.command(&line, DATA_TIMEOUT).await?;
        self.parse_sha256(&line, &answer)
    }

    /// `halfclose PEER`: write 1024 bytes to PEER's echo-all, close the write side, read them
    /// back to EOF.
    pub async fn halfclose(&mut self, peer: PeerId) -> Result<(), PeerError> {
        let line = format!("halfclose {peer}");
        self.expect_bare_ok(&line, QUICK_TIMEOUT).await
    }

    /// `reset PEER`: write 1024 bytes to PEER's echo-all, read them back, reset the stream.
    pub async fn reset(&mut self, peer: PeerId) -> Result<(), PeerError> {
        let line = format!("reset {peer}");
        self.expect_bare_ok(&line, QUICK_TIMEOUT).await
    }

    /// `write-until-error PEER`: write into PEER's sink until a write fails; returns the
    /// bytes written.
    pub async fn write_until_error(&mut self, peer: PeerId) -> Result<u64, PeerError> {
        let line = format!("write-until-error {peer}");
        let answer = self.command(&line, UNTIL_ERROR_TIMEOUT).await?;
        self.parse(&line, &answer)
    }

    /// `read-until-error PEER`: read PEER's source (asked for 2^62 bytes) until a read
    /// fails or the stream ends; returns the bytes read and how it ended.
    pub async fn read_until_error(&mut self, peer: PeerId) -> Result<(u64, ReadEnd), PeerError> {
        let line = format!("read-until-error {peer}");
        let answer = self.command(&line, UNTIL_ERROR_TIMEOUT).await?;
        let (count, end) = answer
            .split_once(' ')
            .ok_or_else(|| self.bad(&line, answer.clone()))?;
        let end = match end {
            "eof" => ReadEnd::Eof,
            "error" => ReadEnd::Error,
            other => return Err(self.bad(&line, format!("end {other:?}"))),
        };
        Ok((self.parse(&line, count)?, end))
    }

    /// `disconnect PEER`: close every connection to PEER.
    pub async fn disconnect(&mut self, peer: PeerId) -> Result<(), PeerError> {
        let line = format!("disconnect {peer}");
        self.expect_bare_ok(&line, QUICK_TIMEOUT).await
    }

    /// `connected PEER`: whether the peer has a connection to PEER.
    pub async fn connected(&mut self, peer: PeerId) -> Result<bool, PeerError> {
        let line = format!("connected {peer}");
        let answer = self.command(&line, QUICK_TIMEOUT).await?;
        self.parse(&line, &answer)
    }

    /// `perf PEER UPLOAD DOWNLOAD`: one perf-spec client run (byte counts); returns the
    /// upload and download times the peer measured.
    pub async fn perf(
        &mut self,
        peer: PeerId,
        upload: u64,
        download: u64,
    ) -> Result<(Duration, Duration), PeerError> {
        let line = format!("perf {peer} {upload} {download}");
        let answer = self.command(&line, DATA_TIMEOUT).await?;
        let (up, down) = answer
            .split_once(' ')
            .ok_or_else(|| self.bad(&line, answer.clone()))?;
        let secs = |s: &str| -> Result<Duration, PeerError> {
            let v: f64 = self.parse(&line, s)?;
            Duration::try_from_secs_f64(v).map_err(|e| self.bad(&line, format!("{s}: {e}")))
        };
        Ok((secs(up)?, secs(down)?))
    }

    async fn expect_bare_ok(&mut self, line: &str, limit: Duration) -> Result<(), PeerError> {
        let answer = self.command(line, limit).await?;
        if answer.is_empty() {
            Ok(())
        } else {
            Err(self.bad(line, format!("ok {answer}")))
        }
    }

    /// `quit`: the peer exits; returns its exit status (0 expected).
    pub async fn quit(mut self) -> Result<ExitStatus, PeerError> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"quit\n").await;
            let _ = stdin.flush().await;
        }
        match tokio::time::timeout(EXIT_TIMEOUT, self.child.wait()).await {
            Err(_) => Err(self.error("quit", PeerErrorKind::Timeout(EXIT_TIMEOUT))),
            Ok(Err(e)) => Err(self.error("quit", PeerErrorKind::Io(e.to_string()))),
            Ok(Ok(status)) => Ok(status),
        }
    }

    /// Kills the peer at once (SIGKILL) and waits for it: its connections end without any
    /// goodbye, as if the machine went away.
    pub async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Parses the `identify` answer's JSON (README: "identify JSON").
pub fn parse_identify(json: &str) -> Result<IdentifyReport, String> {
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| format!("JSON: {e}"))?;
    let text = |field: &str| -> Result<String, String> {
        v.get(field)
            .and_then(|x| x.as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("{field} is not a string"))
    };
    let list = |field: &str| -> Result<Vec<String>, String> {
        v.get(field)
            .and_then(|x| x.as_array())
            .ok_or_else(|| format!("{field} is not a list"))?
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{field} has a non-string"))
            })
            .collect()
    };
    let addr = |s: &str| -> Result<Multiaddr, String> {
        s.parse().map_err(|e| format!("address {s:?}: {e}"))
    };
    let observed = text("observedAddr")?;
    let key_type = match text("publicKeyType")?.as_str() {
        "RSA" => KeyType::Rsa,
        "Ed25519" => KeyType::Ed25519,
        "Secp256k1" => KeyType::Secp256k1,
        "ECDSA" => KeyType::Ecdsa,
        other => return Err(format!("publicKeyType {other:?}")),
    };
    Ok(IdentifyReport {
        agent_version: text("agentVersion")?,
        protocol_version: text("protocolVersion")?,
        protocols: list("protocols")?,
        listen_addrs: list("listenAddrs")?
            .iter()
            .map(|s| addr(s))
            .collect::<Result<_, _>>()?,
        observed_addr: if observed.is_empty() {
            None
        } else {
            Some(addr(&observed)?)
        },
        public_key_type: key_type,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_matches_the_contract() {
        let mut buf = vec![0u8; 600];
        fill_pattern(0, &mut buf);
        for (i, b) in buf.iter().enumerate() {
            assert_eq!(u64::from(*b), (i as u64 * 31 + 7) % 251);
            assert_eq!(*b, pattern_byte(i as u64));
        }
        let mut shifted = vec![0u8; 300];
        fill_pattern(300, &mut shifted);
        assert_eq!(shifted, buf[300..]);
    }

    #[test]
    fn identify_json() {
        let r = parse_identify(
            r#"{"agentVersion":"a\u0026b","protocolVersion":"","protocols":["/a","/b"],"listenAddrs":["/ip4/127.0.0.1/tcp/4001"],"observedAddr":"","publicKeyType":"ECDSA"}"#,
        )
        .unwrap();
        assert_eq!(r.agent_version, "a&b");
        assert_eq!(r.protocols, ["/a", "/b"]);
        assert_eq!(
            r.listen_addrs,
            ["/ip4/127.0.0.1/tcp/4001".parse::<Multiaddr>().unwrap()]
        );
        assert_eq!(r.observed_addr, None);
        assert_eq!(r.public_key_type, KeyType::Ecdsa);
        assert!(parse_identify(r#"{"agentVersion":1}"#).is_err());
    }

    #[test]
    fn hex() {
        assert_eq!(decode_hex("00ff10").unwrap(), [0, 255, 16]);
        assert!(decode_hex("0").is_none());
        assert!(decode_hex("zz").is_none());
    }
}
