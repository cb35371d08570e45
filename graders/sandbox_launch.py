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
import socket
import struct
import sys

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
PR_SET_NO_NEW_PRIVS = 38
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
FAILED = 121
UID_BASE = 200_000  # no account has these ids; each kernel's processes count against its own process limit

libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda s: None if s is None else s.encode()
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


def main() -> None:
    config, argv = json.loads(sys.argv[1]), sys.argv[3:]
    uid = UID_BASE + os.getpid()  # a user of its own: this pid stays the kernel's for the whole run
    _check(libc.unshare(CLONE_NEWNS | (CLONE_NEWNET if config["network_off"] else 0)), "unshare")
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
            mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        else:
            chown_tree(path, uid)
        os.close(fd)

    # A /proc of its own that lists only its user's processes (hidepid=2): no other process, nor its arguments.
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")

    home = config["home"]
    os.makedirs(home, exist_ok=True)
    os.chown(home, uid, uid)
    os.chdir(config["cwd"])

    resource.setrlimit(resource.RLIMIT_NPROC, (config["max_tasks"], config["max_tasks"]))
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(no_new_privs)")

    env = dict(os.environ, HOME=home, USER="learner", LOGNAME="learner", TMPDIR="/tmp")
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    try:
        main()
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the grader must hear why
        print(f"sandbox: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(FAILED)
