"""Start a command (the graded kernel) inside the sandbox that graders/sandbox.py describes.

Run as `python -I -S sandbox_launch.py '<json>' -- <argv...>` by root. Standard library only: it runs before the
repository is hidden and must not import from it. Steps, in order:
  1. new mount and network namespaces; the network namespace has only a loopback, brought up here;
  2. open every folder to keep, while they are still visible (bound back later from /proc/self/fd);
  3. empty tmpfs over /tmp, /dev/shm, /var/tmp, the repository and the folders to hide;
  4. the kept folders bound back at their own paths, read-only except the working directory;
  5. a /proc that shows only its own user's processes; a fresh HOME, a user id of its own, no new privileges (setuid programs cannot give root back);
  6. exec the command, which keeps this process's id (the grader's watchdog follows it).
Any failure exits with status 121 and the reason on stderr: the grader then says the sandbox could not start.
"""
import ctypes
import fcntl
import json
import os
import resource
import signal
import socket
import struct
import sys

CLONE_NEWNS, CLONE_NEWNET, CLONE_NEWUSER, CLONE_NEWPID = 0x00020000, 0x40000000, 0x10000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS, PR_SET_PDEATHSIG = 38, 1
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
FAILED = 121
UID_BASE = 200_000  # no account has these ids; each kernel's processes count against its own process limit

libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def encode(s: str | None) -> bytes | None:
        return None if s is None else s.encode()

    _check(libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data)),
           f"mount {target}")


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s, SIOCGIFFLAGS, request + b"\0" * 14)[:18])[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags | IFF_UP) + b"\0" * 14)


def chown_tree(root: str, uid: int) -> None:
    """The kernel's user owns its working directory, and the files the grader put there, and nothing else."""
    os.chown(root, uid, uid)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(folder, name), uid, uid, follow_symlinks=False)


def write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def remount_read_only(path: str) -> None:
    """Read-only, keeping the flags the mount already has (in a user namespace, dropping a locked one is refused)."""
    flags = os.statvfs(path).f_flag
    kept = sum(bit for st, bit in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC))
               if flags & st)
    mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | kept)


def isolate_files(config: dict, uid: int | None) -> None:
    """Steps 2-4: open what is kept, cover, bind back (read-only but the writable ones, given to `uid` if any)."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    # Opened in the new namespace (a bind's source must be one of its mounts), before anything is covered.
    keep = [(os.open(k["path"], os.O_PATH | os.O_DIRECTORY), k["path"], k["writable"]) for k in config["keep"]]
    if config["network_off"]:
        loopback_up()
    for folder in config["cover"]:
        if os.path.isdir(folder):  # a folder inside one covered already is gone: nothing more to do
            sticky = folder in ("/tmp", "/dev/shm", "/var/tmp")
            mount("tmpfs", folder, "tmpfs", MS_NOSUID | MS_NODEV,
                  f"mode={'1777' if sticky else '755'},size={config['tmpfs_mb']}m")
    for fd, path, writable in keep:
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        if not writable:
            remount_read_only(path)
        elif uid is not None:
            chown_tree(path, uid)
        os.close(fd)


def as_root(config: dict) -> None:
    """Root: mount and network namespaces, then a user id of its own."""
    uid = UID_BASE + os.getpid()  # a user of its own: this pid stays the kernel's for the whole run
    _check(libc.unshare(CLONE_NEWNS | (CLONE_NEWNET if config["network_off"] else 0)), "unshare")
    isolate_files(config, uid)
    # A /proc of its own that lists only its user's processes (hidepid=2): no other process, nor its arguments.
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
    os.makedirs(config["home"], exist_ok=True)
    os.chown(config["home"], uid, uid)
    os.chdir(config["cwd"])
    resource.setrlimit(resource.RLIMIT_NPROC, (config["max_tasks"], config["max_tasks"]))
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def rootless(config: dict) -> None:
    """Not root: a user namespace (the same user, mapped to itself) gives the mount, network and PID namespaces;
    this process then forks the command as the namespace's first process and waits for it: when it ends, or when
    this process is killed, every process of the namespace is gone. Does not return in the parent."""
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | (CLONE_NEWNET if config["network_off"] else 0)),
           "unshare")
    write("/proc/self/setgroups", "deny")
    write("/proc/self/uid_map", f"{uid} {uid} 1")
    write("/proc/self/gid_map", f"{gid} {gid} 1")
    isolate_files(config, None)
    child = os.fork()
    if child:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt reaches the kernel through its process group
        for forwarded in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(forwarded, lambda signum, _frame: os.kill(child, signum))
        while True:
            try:
                _, status = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    _check(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(pdeathsig)")
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)  # the namespace's own processes only
    os.makedirs(config["home"], exist_ok=True)
    os.chdir(config["cwd"])
    resource.setrlimit(resource.RLIMIT_NPROC, (config["max_tasks"], config["max_tasks"]))


def main() -> None:
    config, argv = json.loads(sys.argv[1]), sys.argv[3:]
    if config.get("rootless"):
        rootless(config)
    else:
        as_root(config)
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(no_new_privs)")
    env = dict(os.environ, HOME=config["home"], USER="learner", LOGNAME="learner", TMPDIR="/tmp")
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the grader must hear why
        print(f"sandbox: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(FAILED)
