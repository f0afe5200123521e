//! Starting an instance's process in a sandbox, with only safe system-call wrappers.
//!
//! The process is spawned from a dedicated thread that is then discarded. Namespaces,
//! `no_new_privs` and cgroup v1 membership are attributes of a *thread* that children inherit,
//! so that thread first applies them to itself — new mount, PID and network namespaces (a
//! private `/tmp` bind-mounted over the host's, loopback brought up for the Runtime API
//! listener it then binds), the instance's memory and pids cgroups — and then spawns the
//! process, which starts already confined. No `pre_exec` hook, no `unsafe`. The expensive
//! namespace steps are done ahead of time by spare threads ([`Sandbox`]). What the host refuses
//! is detected once ([`Capabilities::detect`]) and skipped; the executor reports what is in
//! effect.
//!
//! Always applied: own process group (killed as a whole), own working directory, a clean
//! environment, stdin closed, stdout and stderr into one pipe (one ordered log stream).

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

/// What this host lets the sandbox do; detected once at executor start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Capabilities {
    pub mount_namespace: bool,
    pub pid_namespace: bool,
    pub network_namespace: bool,
    pub cgroup: Option<CgroupVersion>,
    /// `/tmp` is private and everything else read-only (needs a mount namespace and the data
    /// directory outside `/tmp`).
    pub private_tmp: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CgroupVersion {
    V1,
    V2,
}

impl Capabilities {
    /// Probe in a throwaway thread which namespaces can be created and which cgroup hierarchy
    /// nimbus may write to.
    pub fn detect(cgroup_root: &CgroupRoot) -> Capabilities {
        let probe = std::thread::spawn(|| {
            let mount = nix::sched::unshare(CloneFlags::CLONE_NEWNS).is_ok()
                && make_mounts_private().is_ok();
            let net =
                nix::sched::unshare(CloneFlags::CLONE_NEWNET).is_ok() && loopback_up().is_ok();
            let pid = nix::sched::unshare(CloneFlags::CLONE_NEWPID).is_ok();
            (mount, pid, net)
        })
        .join();
        let (mount, pid, net) = probe.unwrap_or((false, false, false));
        Capabilities {
            mount_namespace: mount,
            pid_namespace: pid,
            network_namespace: net,
            cgroup: cgroup_root.version(),
            private_tmp: false,
        }
    }
}

/// Where nimbus creates per-instance cgroups.
#[derive(Debug, Clone)]
pub enum CgroupRoot {
    /// cgroup v2: one directory whose `cgroup.subtree_control` enables memory and pids.
    V2(PathBuf),
    /// cgroup v1: one directory in each of the memory and pids hierarchies.
    V1 {
        memory: PathBuf,
        pids: PathBuf,
    },
    None,
}

impl CgroupRoot {
    /// Create nimbus's cgroup directories below this process's own cgroups, if permitted.
    pub fn create(name: &str) -> CgroupRoot {
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let path_of = |controller: &str| {
            own.lines().find_map(|line| {
                let mut fields = line.splitn(3, ':');
                let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
                (controllers.split(',').any(|c| c == controller)).then(|| path.to_owned())
            })
        };
        let v2_root = Path::new("/sys/fs/cgroup");
        if fs::read_to_string(v2_root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
        {
            let own_path = own
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .unwrap_or("/");
            let dir = v2_root.join(own_path.trim_start_matches('/')).join(name);
            if let Some(parent) = dir.parent() {
                remove_stale(parent);
            }
            let ok = fs::create_dir_all(&dir).is_ok()
                && fs::write(dir.join("cgroup.subtree_control"), "+memory +pids").is_ok();
            return if ok {
                CgroupRoot::V2(dir)
            } else {
                CgroupRoot::None
            };
        }
        let (Some(memory_path), Some(pids_path)) = (path_of("memory"), path_of("pids")) else {
            return CgroupRoot::None;
        };
        let memory = Path::new("/sys/fs/cgroup/memory")
            .join(memory_path.trim_start_matches('/'))
            .join(name);
        let pids = Path::new("/sys/fs/cgroup/pids")
            .join(pids_path.trim_start_matches('/'))
            .join(name);
        for dir in [&memory, &pids] {
            if let Some(parent) = dir.parent() {
                remove_stale(parent);
            }
        }
        if fs::create_dir_all(&memory).is_ok() && fs::create_dir_all(&pids).is_ok() {
            CgroupRoot::V1 { memory, pids }
        } else {
            CgroupRoot::None
        }
    }

    fn version(&self) -> Option<CgroupVersion> {
        match self {
            CgroupRoot::V2(_) => Some(CgroupVersion::V2),
            CgroupRoot::V1 { .. } => Some(CgroupVersion::V1),
            CgroupRoot::None => None,
        }
    }

    /// Remove nimbus's (now empty) cgroup directories.
    pub fn remove(&self) {
        match self {
            CgroupRoot::V2(dir) => {
                let _ = fs::remove_dir(dir);
            }
            CgroupRoot::V1 { memory, pids } => {
                let _ = fs::remove_dir(memory);
                let _ = fs::remove_dir(pids);
            }
            CgroupRoot::None => {}
        }
    }

    /// A new cgroup (one directory per hierarchy) for one instance, without limits yet.
    fn create_instance(&self, id: &str) -> io::Result<Option<Cgroup>> {
        let cgroup = match self {
            CgroupRoot::None => return Ok(None),
            CgroupRoot::V2(root) => {
                let dir = root.join(id);
                fs::create_dir(&dir)?;
                Cgroup::V2(dir)
            }
            CgroupRoot::V1 { memory, pids } => {
                let memory = memory.join(id);
                let pids = pids.join(id);
                fs::create_dir(&memory)?;
                fs::create_dir(&pids)?;
                Cgroup::V1 { memory, pids }
            }
        };
        Ok(Some(cgroup))
    }
}

/// Remove `nimbus-<pid>` cgroups left by servers that are no longer running (and their
/// emptied instance cgroups); a killed server cannot clean up after itself.
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("nimbus-"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(children) = fs::read_dir(entry.path()) {
            for child in children.flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = fs::remove_dir(child.path());
                }
            }
        }
        let _ = fs::remove_dir(entry.path());
    }
}

/// One instance's cgroup(s).
#[derive(Debug)]
pub(crate) enum Cgroup {
    V2(PathBuf),
    V1 { memory: PathBuf, pids: PathBuf },
}

impl Cgroup {
    /// Open the files that set the instance's limits and membership. Opened while the thread
    /// still sees a writable `/sys`: a spare's mount namespace is made read-only before the
    /// limits are known, and an open file stays writable.
    fn controls(&self) -> io::Result<Controls> {
        let open = |path: PathBuf| fs::OpenOptions::new().write(true).open(path);
        Ok(match self {
            Cgroup::V2(dir) => Controls {
                memory: open(dir.join("memory.max"))?,
                swap: open(dir.join("memory.swap.max")).ok(),
                pids: open(dir.join("pids.max"))?,
                procs: Some(open(dir.join("cgroup.procs"))?),
                v2: true,
            },
            Cgroup::V1 { memory, pids } => Controls {
                memory: open(memory.join("memory.limit_in_bytes"))?,
                swap: open(memory.join("memory.memsw.limit_in_bytes")).ok(),
                pids: open(pids.join("pids.max"))?,
                procs: None,
                v2: false,
            },
        })
    }

    /// Peak memory use of everything in the cgroup so far, in bytes.
    pub fn peak_memory(&self) -> Option<u64> {
        let file = match self {
            Cgroup::V2(dir) => dir.join("memory.peak"),
            Cgroup::V1 { memory, .. } => memory.join("memory.max_usage_in_bytes"),
        };
        fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    /// Whether the kernel OOM-killed something in the cgroup.
    pub fn oom_killed(&self) -> bool {
        let (file, key) = match self {
            Cgroup::V2(dir) => (dir.join("memory.events"), "oom_kill"),
            Cgroup::V1 { memory, .. } => (memory.join("memory.oom_control"), "oom_kill"),
        };
        let text = fs::read_to_string(file).unwrap_or_default();
        let counted = text.lines().any(|line| {
            line.strip_prefix(key)
                .and_then(|n| n.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0)
        });
        counted
            || matches!(self, Cgroup::V1 { memory, .. }
                if fs::read_to_string(memory.join("memory.failcnt"))
                    .ok()
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0))
    }

    /// Remove the (empty) cgroup; retried by the caller after the process is gone.
    pub fn remove(&self) -> io::Result<()> {
        match self {
            Cgroup::V2(dir) => fs::remove_dir(dir),
            Cgroup::V1 { memory, pids } => {
                let first = fs::remove_dir(memory);
                fs::remove_dir(pids).and(first)
            }
        }
    }

    /// Move the calling thread (v1) so that the children it spawns start inside.
    fn enter_thread(&self) -> io::Result<()> {
        if let Cgroup::V1 { memory, pids } = self {
            let tid = nix::unistd::gettid().to_string();
            fs::write(memory.join("tasks"), &tid)?;
            fs::write(pids.join("tasks"), &tid)?;
        }
        Ok(())
    }
}

/// An instance cgroup's control files, open for writing.
struct Controls {
    memory: fs::File,
    swap: Option<fs::File>,
    pids: fs::File,
    procs: Option<fs::File>,
    v2: bool,
}

impl Controls {
    /// Set the limits: memory (swap included where the kernel accounts it) and processes.
    fn limit(&mut self, memory_bytes: u64, pids_max: u32) -> io::Result<()> {
        use std::io::Write;
        self.memory.write_all(memory_bytes.to_string().as_bytes())?;
        if let Some(swap) = &mut self.swap {
            // v2 limits swap on its own; v1 limits memory + swap together.
            let value = if self.v2 {
                "0".to_owned()
            } else {
                memory_bytes.to_string()
            };
            let _ = swap.write_all(value.as_bytes());
        }
        self.pids.write_all(pids_max.to_string().as_bytes())?;
        Ok(())
    }

    /// Move a started process (v2, where threads cannot be moved alone).
    fn adopt(&mut self, pid: u32) -> io::Result<()> {
        use std::io::Write;
        if let Some(procs) = &mut self.procs {
            procs.write_all(pid.to_string().as_bytes())?;
        }
        Ok(())
    }
}

/// Everything needed to start one instance.
pub(crate) struct Plan {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// The instance's private temporary directory, mounted at `/tmp` when a mount namespace is
    /// available.
    pub tmp: PathBuf,
    pub memory_bytes: u64,
    pub pids_max: u32,
    /// Give the process a network namespace of its own (loopback only).
    pub isolate_network: bool,
}

/// Where Lambda's Parameters and Secrets extension listens.
pub(crate) const EXTENSION_PORT: u16 = 2773;

/// A started instance process.
pub(crate) struct Spawned {
    pub child: tokio::process::Child,
    /// The Runtime API listener, bound inside the process's network namespace.
    pub listener: TcpListener,
    /// `127.0.0.1:2773` inside the process's own network namespace, where Lambda's Parameters
    /// and Secrets extension listens; none when the process shares the host's network.
    pub extension: Option<TcpListener>,
    /// The read end of the process's stdout + stderr.
    pub output: OwnedFd,
    pub cgroup: Option<Cgroup>,
}

/// Starts instance processes, confined as far as the host permits.
///
/// Creating a mount namespace costs ~10 ms on a busy host and bringing up a network
/// namespace's loopback ~3 ms, so a few *spare* threads do both ahead of time and wait; a
/// cold start hands its plan to a spare, which only bind-mounts `/tmp`, joins the cgroups,
/// unshares the PID namespace and spawns (about 1 ms). A new spare is prepared in the
/// background after each use. Without spares (all in use) the same steps run on a fresh
/// thread.
pub(crate) struct Sandbox {
    capabilities: Capabilities,
    setup: Setup,
    cgroups: Arc<CgroupRoot>,
    spares: Arc<Spares>,
    runtime: Option<tokio::runtime::Handle>,
}

/// How many prepared threads are kept waiting.
pub const SPARES: usize = 2;

type Job = Box<(Plan, tokio::sync::oneshot::Sender<io::Result<Spawned>>)>;

#[derive(Default)]
struct Spares {
    ready: Mutex<Vec<mpsc::Sender<Job>>>,
    preparing: AtomicUsize,
}

impl Sandbox {
    /// `hidden`: paths functions must not see (the server's token, store, artifacts); they are
    /// covered in every instance's mount namespace. `private_tmp`: instance directories are
    /// outside `/tmp`, so `/tmp` can be replaced and the rest of the filesystem made read-only.
    pub fn new(
        capabilities: Capabilities,
        cgroups: CgroupRoot,
        hidden: Vec<PathBuf>,
        private_tmp: bool,
    ) -> Sandbox {
        let private_tmp = capabilities.mount_namespace && private_tmp;
        let sandbox = Sandbox {
            capabilities: Capabilities {
                private_tmp,
                ..capabilities
            },
            setup: Setup {
                hidden: hidden.into(),
                private_tmp,
            },
            cgroups: Arc::new(cgroups),
            spares: Arc::new(Spares::default()),
            runtime: tokio::runtime::Handle::try_current().ok(),
        };
        sandbox.refill();
        sandbox
    }

    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    fn prepares_namespaces(&self) -> bool {
        self.capabilities.mount_namespace || self.capabilities.network_namespace
    }

    /// Start preparing spares until [`SPARES`] are ready or on the way.
    fn refill(&self) {
        let Some(runtime) = self.runtime.clone() else {
            return;
        };
        if !self.prepares_namespaces() {
            return;
        }
        loop {
            let ready = self.spares.ready.lock().map(|r| r.len()).unwrap_or(SPARES);
            let preparing = self.spares.preparing.load(Ordering::Acquire);
            if ready + preparing >= SPARES {
                return;
            }
            self.spares.preparing.fetch_add(1, Ordering::AcqRel);
            let spares = Arc::downgrade(&self.spares);
            let capabilities = self.capabilities;
            let cgroups = self.cgroups.clone();
            let setup = self.setup.clone();
            let runtime = runtime.clone();
            let started = std::thread::Builder::new()
                .name("nimbus-spare".into())
                .spawn(move || spare(spares, capabilities, cgroups, setup, runtime));
            if started.is_err() {
                self.spares.preparing.fetch_sub(1, Ordering::AcqRel);
                return;
            }
        }
    }

    /// Start `plan`; blocks a dedicated thread, never the async runtime.
    pub async fn spawn(&self, plan: Plan) -> io::Result<Spawned> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        // A spare's network namespace suits only functions that want isolation.
        let spare_fits = plan.isolate_network || !self.capabilities.network_namespace;
        let mut job: Option<Job> = Some(Box::new((plan, sender)));
        if spare_fits && self.prepares_namespaces() {
            while let Some(spare) = self.spares.ready.lock().ok().and_then(|mut r| r.pop()) {
                match job.take().map(|j| spare.send(j)) {
                    Some(Ok(())) => break,
                    // That spare died; try the next with the job back.
                    Some(Err(mpsc::SendError(returned))) => job = Some(returned),
                    None => break,
                }
            }
            self.refill();
        }
        if let Some(job) = job {
            let (plan, sender) = *job;
            let runtime = tokio::runtime::Handle::current();
            let capabilities = self.capabilities;
            let cgroups = self.cgroups.clone();
            let setup = self.setup.clone();
            std::thread::Builder::new()
                .name("nimbus-spawn".into())
                .spawn(move || {
                    let _entered = runtime.enter();
                    let _ = sender.send(spawn_fresh(plan, capabilities, &cgroups, &setup));
                })?;
        }
        receiver
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the spawning thread failed")))
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // Waiting spares see their channel close and exit.
        if let Ok(mut ready) = self.spares.ready.lock() {
            ready.clear();
        }
        self.cgroups.remove();
    }
}

/// A spare thread: prepare namespaces, offer itself, then start the one plan it is given.
fn spare(
    spares: std::sync::Weak<Spares>,
    capabilities: Capabilities,
    cgroups: Arc<CgroupRoot>,
    setup: Setup,
    runtime: tokio::runtime::Handle,
) {
    let _entered = runtime.enter();
    let prepared = prepare(&capabilities, true, &cgroups, &setup);
    let Some(pool) = spares.upgrade() else {
        if let Ok(Prepared {
            cgroup: Some(cgroup),
            ..
        }) = prepared
        {
            remove_when_empty_here(cgroup);
        }
        return;
    };
    pool.preparing.fetch_sub(1, Ordering::AcqRel);
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            tracing::warn!(error = %error, "could not prepare a sandbox");
            return;
        }
    };
    let (sender, receiver) = mpsc::channel::<Job>();
    if let Ok(mut ready) = pool.ready.lock() {
        ready.push(sender);
    }
    drop(pool);
    if let Ok(job) = receiver.recv() {
        let (plan, reply) = *job;
        let _ = reply.send(finish(plan, &capabilities, prepared));
    } else if let Some(cgroup) = prepared.cgroup {
        remove_when_empty_here(cgroup);
    }
}

/// The mount-namespace setup every instance gets.
#[derive(Clone)]
struct Setup {
    hidden: Arc<[PathBuf]>,
    /// A private `/tmp` and everything else read-only (decided once: the instance directories
    /// live outside `/tmp`).
    private_tmp: bool,
}

/// What a thread has done to itself before it learns which process to start.
struct Prepared {
    /// Every mount is read-only; the instance's directory is to be bound at `/tmp`.
    private_tmp: bool,
    /// The Runtime API listener, bound inside a new network namespace.
    listener: Option<TcpListener>,
    /// The extension's port in that namespace.
    extension: Option<TcpListener>,
    /// A cgroup the thread has already joined (v1; joining costs ~10 ms of RCU waiting).
    cgroup: Option<Cgroup>,
    controls: Option<Controls>,
}

/// Enter new mount and (if `network`) network namespaces and a new cgroup, as the host
/// permits.
fn prepare(
    capabilities: &Capabilities,
    network: bool,
    cgroups: &CgroupRoot,
    setup: &Setup,
) -> io::Result<Prepared> {
    let cgroup = cgroups.create_instance(&uuid::Uuid::new_v4().simple().to_string())?;
    let entered = (|| {
        if let Some(cgroup) = &cgroup {
            cgroup.enter_thread()?;
        }
        let mut prepared = Prepared {
            private_tmp: false,
            listener: None,
            extension: None,
            cgroup: None,
            controls: cgroup.as_ref().map(Cgroup::controls).transpose()?,
        };
        if capabilities.mount_namespace {
            nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(io::Error::from)?;
            make_mounts_private()?;
            for path in setup.hidden.iter() {
                hide(path)?;
            }
            if setup.private_tmp {
                make_mounts_read_only()?;
                prepared.private_tmp = true;
            }
        }
        if network && capabilities.network_namespace {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            loopback_up()?;
            prepared.listener = Some(TcpListener::bind(("127.0.0.1", 0))?);
            prepared.extension = Some(TcpListener::bind(("127.0.0.1", EXTENSION_PORT))?);
        }
        Ok(prepared)
    })();
    match entered {
        Ok(mut prepared) => {
            prepared.cgroup = cgroup;
            Ok(prepared)
        }
        Err(error) => {
            if let Some(cgroup) = cgroup {
                remove_when_empty_here(cgroup);
            }
            Err(error)
        }
    }
}

/// Runs on a throwaway thread: everything it changes about itself dies with it.
fn spawn_fresh(
    plan: Plan,
    capabilities: Capabilities,
    cgroups: &CgroupRoot,
    setup: &Setup,
) -> io::Result<Spawned> {
    let prepared = prepare(&capabilities, plan.isolate_network, cgroups, setup)?;
    finish(plan, &capabilities, prepared)
}

/// The per-instance steps, on a prepared thread: private /tmp, cgroups, no_new_privs, a PID
/// namespace, and the spawn itself.
fn finish(plan: Plan, capabilities: &Capabilities, mut prepared: Prepared) -> io::Result<Spawned> {
    let cgroup = prepared.cgroup.take();
    match start(plan, capabilities, prepared) {
        Ok((child, listener, extension, output)) => Ok(Spawned {
            child,
            listener,
            extension,
            output,
            cgroup,
        }),
        Err(error) => {
            if let Some(cgroup) = cgroup {
                remove_when_empty_here(cgroup);
            }
            Err(error)
        }
    }
}

fn start(
    mut plan: Plan,
    capabilities: &Capabilities,
    mut prepared: Prepared,
) -> io::Result<(
    tokio::process::Child,
    TcpListener,
    Option<TcpListener>,
    OwnedFd,
)> {
    nix::sys::prctl::set_no_new_privs().map_err(io::Error::from)?;
    if let Some(controls) = &mut prepared.controls {
        controls.limit(plan.memory_bytes, plan.pids_max)?;
    }

    if prepared.private_tmp {
        nix::mount::mount(
            Some(plan.tmp.as_path()),
            "/tmp",
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(io::Error::from)?;
        // A bind mount copies the read-only flag of the mount it comes from.
        nix::mount::mount(
            None::<&str>,
            "/tmp",
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            None::<&str>,
        )
        .map_err(io::Error::from)?;
    }
    if nix::unistd::geteuid().is_root() {
        drop_capabilities()?;
    }
    let listener = match prepared.listener {
        Some(listener) => listener,
        None => TcpListener::bind(("127.0.0.1", 0))?,
    };
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let extension = prepared.extension.take();
    if let Some(extension) = &extension {
        extension.set_nonblocking(true)?;
    }
    // Last: the first process started after this becomes the namespace's init, and once an
    // init has exited no other process can join (so `ip` must have run before it).
    if capabilities.pid_namespace {
        nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(io::Error::from)?;
    }

    let tmp_env = if prepared.private_tmp {
        "/tmp".to_owned()
    } else {
        plan.tmp.display().to_string()
    };
    plan.env.push(("TMPDIR".into(), tmp_env));
    plan.env
        .push(("AWS_LAMBDA_RUNTIME_API".into(), format!("127.0.0.1:{port}")));
    plan.env.push((
        "NIMBUS_API".into(),
        format!("http://127.0.0.1:{port}/nimbus"),
    ));
    // The extension's configuration variable, as Lambda users set it: 2773 in a network
    // namespace of the instance's own, else the instance's listener.
    let extension_port = if extension.is_some() {
        EXTENSION_PORT
    } else {
        port
    };
    plan.env.push((
        "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT".into(),
        extension_port.to_string(),
    ));
    if plan.env.iter().any(|(k, _)| k == "AWS_ACCESS_KEY_ID") {
        // The same listener forwards AWS-signed requests to the platform's endpoint.
        for name in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"] {
            plan.env
                .push((name.into(), format!("http://127.0.0.1:{port}")));
        }
    }

    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    let mut command = tokio::process::Command::new(&plan.program);
    command
        .args(&plan.args)
        .env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&plan.cwd)
        .process_group(0)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(write.try_clone()?))
        .stderr(std::process::Stdio::from(write))
        .kill_on_drop(true);
    let child = command.spawn()?;
    drop(command);
    if let (Some(controls), Some(pid)) = (&mut prepared.controls, child.id()) {
        controls.adopt(pid)?;
    }
    Ok((child, listener, extension, read))
}

/// Cover `path` in the calling thread's mount namespace: an empty read-only tmpfs over a
/// directory, `/dev/null` over a file. Missing paths need no hiding.
fn hide(path: &Path) -> io::Result<()> {
    let Ok(meta) = fs::metadata(path) else {
        return Ok(());
    };
    let result = if meta.is_dir() {
        nix::mount::mount(
            Some("nimbus-hidden"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some("size=0,mode=000"),
        )
    } else {
        nix::mount::mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    result.map_err(|e| io::Error::other(format!("hide {}: {e}", path.display())))
}

/// Capabilities a function's root keeps (Docker's default set); every other one leaves the
/// bounding set, so the process cannot unmount what covers the server's state, load modules,
/// trace processes or reconfigure the network.
const KEPT_CAPABILITIES: [caps::Capability; 14] = [
    caps::Capability::CAP_CHOWN,
    caps::Capability::CAP_DAC_OVERRIDE,
    caps::Capability::CAP_FSETID,
    caps::Capability::CAP_FOWNER,
    caps::Capability::CAP_MKNOD,
    caps::Capability::CAP_NET_RAW,
    caps::Capability::CAP_SETGID,
    caps::Capability::CAP_SETUID,
    caps::Capability::CAP_SETFCAP,
    caps::Capability::CAP_SETPCAP,
    caps::Capability::CAP_NET_BIND_SERVICE,
    caps::Capability::CAP_SYS_CHROOT,
    caps::Capability::CAP_KILL,
    caps::Capability::CAP_AUDIT_WRITE,
];

/// Shrink the calling thread's bounding set; what it spawns can never gain more.
fn drop_capabilities() -> io::Result<()> {
    let error = |e: caps::errors::CapsError| io::Error::other(format!("drop capabilities: {e}"));
    for capability in caps::read(None, caps::CapSet::Bounding).map_err(error)? {
        if !KEPT_CAPABILITIES.contains(&capability) {
            caps::drop(None, caps::CapSet::Bounding, capability).map_err(error)?;
        }
    }
    Ok(())
}

/// Remount every mount of the calling thread's namespace read-only, keeping its other flags,
/// as Lambda's filesystem is read-only but for `/tmp`.
fn make_mounts_read_only() -> io::Result<()> {
    // The thread's own namespace: /proc/self would show the process leader's.
    let table = fs::read_to_string("/proc/thread-self/mountinfo")?;
    for line in table.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(point), Some(options)) = (fields.get(4), fields.get(5)) else {
            continue;
        };
        let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        for option in options.split(',') {
            flags |= match option {
                "nosuid" => MsFlags::MS_NOSUID,
                "nodev" => MsFlags::MS_NODEV,
                "noexec" => MsFlags::MS_NOEXEC,
                "noatime" => MsFlags::MS_NOATIME,
                "nodiratime" => MsFlags::MS_NODIRATIME,
                "relatime" => MsFlags::MS_RELATIME,
                _ => MsFlags::empty(),
            };
        }
        let point = unescape_mount_point(point);
        let remounted = nix::mount::mount(
            None::<&str>,
            point.as_str(),
            None::<&str>,
            flags,
            None::<&str>,
        );
        if let Err(error) = remounted {
            // The root must be read-only; a mount that cannot be remounted (one covered by
            // another) is not reachable anyway.
            if point == "/" {
                return Err(io::Error::other(format!("remount / read-only: {error}")));
            }
            tracing::debug!(mount = %point, error = %error, "left as is");
        }
    }
    Ok(())
}

/// Mount points in mountinfo escape space, tab, newline and backslash as `\ooo`.
fn unescape_mount_point(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'\\'
            && let Some(octal) = text.get(i + 1..i + 4)
            && let Ok(value) = u8::from_str_radix(octal, 8)
        {
            out.push(value);
            i += 4;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn make_mounts_private() -> io::Result<()> {
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(io::Error::from)
}

/// Remove a cgroup once the processes in it are gone (retrying briefly), from async code: the
/// waiting happens on the blocking pool.
pub(crate) fn remove_when_empty(cgroup: Cgroup) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(move || remove_when_empty_here(cgroup));
        }
        Err(_) => remove_when_empty_here(cgroup),
    }
}

/// The same, waiting on the calling thread. Sandbox threads must use this one: a thread in a
/// private (read-only, covered) mount namespace that asked tokio for blocking work could make
/// tokio start a new pool thread *from it*, and that thread — inheriting the namespaces — would
/// then run the server's own blocking work (store writes, file creation) in the function's view
/// of the filesystem.
fn remove_when_empty_here(cgroup: Cgroup) {
    for _ in 0..50 {
        if cgroup.remove().is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Bring up `lo` in the calling thread's (new) network namespace.
fn loopback_up() -> io::Result<()> {
    let status = std::process::Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other("`ip link set lo up` failed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_unescaped() {
        assert_eq!(unescape_mount_point("/a\\040b/c"), "/a b/c");
        assert_eq!(unescape_mount_point("/tab\\011x"), "/tab\tx");
        assert_eq!(unescape_mount_point("/back\\134slash"), "/back\\slash");
        assert_eq!(unescape_mount_point("/plain"), "/plain");
        assert_eq!(unescape_mount_point("/short\\04"), "/short\\04");
    }
}
