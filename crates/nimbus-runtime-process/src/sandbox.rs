//! Starting an instance's process in a sandbox, with only safe system-call wrappers.
//!
//! The process is spawned from a short-lived dedicated thread. Namespaces, `no_new_privs` and
//! cgroup v1 membership are attributes of a *thread* that children inherit, so that thread first
//! applies them to itself — new mount, PID and network namespaces (a private `/tmp` bind-mounted
//! over the host's, loopback brought up for the Runtime API listener it then binds), the
//! instance's memory and pids cgroups — and then spawns the process, which starts already
//! confined, and exits. No `pre_exec` hook, no `unsafe`. What the host refuses is detected once
//! ([`Capabilities::detect`]) and skipped; the executor reports what is in effect.
//!
//! Always applied: own process group (killed as a whole), own working directory, a clean
//! environment, stdin closed, stdout and stderr into one pipe (one ordered log stream).

use nix::sched::CloneFlags;
use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// What this host lets the sandbox do; detected once at executor start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Capabilities {
    pub mount_namespace: bool,
    pub pid_namespace: bool,
    pub network_namespace: bool,
    pub cgroup: Option<CgroupVersion>,
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

    /// A cgroup for one instance with its limits set.
    fn instance(&self, id: &str, memory_bytes: u64, pids_max: u32) -> io::Result<Option<Cgroup>> {
        let cgroup = match self {
            CgroupRoot::None => return Ok(None),
            CgroupRoot::V2(root) => {
                let dir = root.join(id);
                fs::create_dir(&dir)?;
                fs::write(dir.join("memory.max"), memory_bytes.to_string())?;
                let _ = fs::write(dir.join("memory.swap.max"), "0");
                fs::write(dir.join("pids.max"), pids_max.to_string())?;
                Cgroup::V2(dir)
            }
            CgroupRoot::V1 { memory, pids } => {
                let memory = memory.join(id);
                let pids = pids.join(id);
                fs::create_dir(&memory)?;
                fs::create_dir(&pids)?;
                let cgroup = Cgroup::V1 { memory, pids };
                if let Cgroup::V1 { memory, pids } = &cgroup {
                    fs::write(
                        memory.join("memory.limit_in_bytes"),
                        memory_bytes.to_string(),
                    )?;
                    let _ = fs::write(
                        memory.join("memory.memsw.limit_in_bytes"),
                        memory_bytes.to_string(),
                    );
                    fs::write(pids.join("pids.max"), pids_max.to_string())?;
                }
                cgroup
            }
        };
        Ok(Some(cgroup))
    }
}

/// One instance's cgroup(s).
#[derive(Debug)]
pub(crate) enum Cgroup {
    V2(PathBuf),
    V1 { memory: PathBuf, pids: PathBuf },
}

impl Cgroup {
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

    /// Move a started process (v2, where threads cannot be moved alone).
    fn adopt(&self, pid: u32) -> io::Result<()> {
        if let Cgroup::V2(dir) = self {
            fs::write(dir.join("cgroup.procs"), pid.to_string())?;
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
    pub id: String,
}

/// A started instance process.
pub(crate) struct Spawned {
    pub child: tokio::process::Child,
    /// The Runtime API listener, bound inside the process's network namespace.
    pub listener: TcpListener,
    /// The read end of the process's stdout + stderr.
    pub output: OwnedFd,
    pub cgroup: Option<Cgroup>,
}

/// Start `plan` in a sandbox; blocks a dedicated thread, never the async runtime.
pub(crate) async fn spawn(
    plan: Plan,
    capabilities: Capabilities,
    cgroups: std::sync::Arc<CgroupRoot>,
) -> io::Result<Spawned> {
    let runtime = tokio::runtime::Handle::current();
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("nimbus-spawn".into())
        .spawn(move || {
            let _entered = runtime.enter();
            let _ = sender.send(spawn_confined(plan, capabilities, &cgroups));
        })?;
    receiver
        .await
        .unwrap_or_else(|_| Err(io::Error::other("the spawning thread failed")))
}

/// Runs on a throwaway thread: everything it changes about itself dies with it.
fn spawn_confined(
    mut plan: Plan,
    capabilities: Capabilities,
    cgroups: &CgroupRoot,
) -> io::Result<Spawned> {
    nix::sys::prctl::set_no_new_privs().map_err(io::Error::from)?;
    let cgroup = cgroups.instance(&plan.id, plan.memory_bytes, plan.pids_max)?;
    if let Some(cgroup) = &cgroup {
        cgroup.enter_thread()?;
    }

    // A private /tmp hides the host's; that is only possible when nothing the process needs
    // lives there (a data directory under /tmp keeps the host's /tmp, with TMPDIR private).
    let needs_host_tmp = std::iter::once(plan.cwd.as_path())
        .chain(std::iter::once(plan.program.as_path()))
        .chain(plan.args.iter().map(Path::new))
        .any(|path| path.starts_with("/tmp"));
    let mut private_tmp = false;
    if capabilities.mount_namespace && !needs_host_tmp {
        nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(io::Error::from)?;
        make_mounts_private()?;
        nix::mount::mount(
            Some(plan.tmp.as_path()),
            "/tmp",
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(io::Error::from)?;
        private_tmp = true;
    }
    if plan.isolate_network && capabilities.network_namespace {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        loopback_up()?;
    }
    // Last: the first process started after this becomes the namespace's init, and once an
    // init has exited no other process can join (so `ip` above must run before it).
    if capabilities.pid_namespace {
        nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(io::Error::from)?;
    }
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();

    let tmp_env = if private_tmp {
        "/tmp".to_owned()
    } else {
        plan.tmp.display().to_string()
    };
    plan.env.push(("TMPDIR".into(), tmp_env.clone()));
    plan.env
        .push(("AWS_LAMBDA_RUNTIME_API".into(), format!("127.0.0.1:{port}")));

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
    if let (Some(cgroup), Some(pid)) = (&cgroup, child.id()) {
        cgroup.adopt(pid)?;
    }
    Ok(Spawned {
        child,
        listener,
        output: read,
        cgroup,
    })
}

fn make_mounts_private() -> io::Result<()> {
    use nix::mount::MsFlags;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(io::Error::from)
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
