"""The default seccomp profile: which system calls a container may make.

The same policy as Docker's default profile, written down as Python lists:
everything is refused with EPERM unless allowed here. What is left out is the
kernel's attack surface a container has no business with: mounting and
namespaces (mount, unshare, setns, the new mount API), kernel modules, kexec,
keyrings, bpf and perf, swap, the clock, reboot, userfaultfd, io_uring. A
capability added with --cap-add brings back the calls it is about, as in
Docker: CAP_SYS_ADMIN brings mount and unshare, CAP_SYS_PTRACE kcmp, ...
"""
import os


# Allowed for every container, grouped so that a reader can check them.
FILES = """
access chdir chmod chown chown32 close close_range copy_file_range creat dup dup2 dup3
faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat
fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock
fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64
getcwd getdents getdents64 getxattr inotify_add_watch inotify_init inotify_init1
inotify_rm_watch lchown lchown32 lgetxattr link linkat listxattr llistxattr _llseek
lremovexattr lseek lsetxattr lstat lstat64 memfd_create mkdir mkdirat mknod mknodat
newfstatat open openat openat2 pread64 preadv preadv2 pwrite64 pwritev pwritev2 read
readahead readlink readlinkat readv removexattr rename renameat renameat2 rmdir sendfile
sendfile64 setxattr splice stat stat64 statfs statfs64 statx symlink symlinkat sync
sync_file_range syncfs tee truncate truncate64 umask unlink unlinkat utime utimensat
utimensat_time64 utimes vmsplice write writev
"""
EVENTS = """
epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
epoll_wait_old eventfd eventfd2 io_cancel io_destroy io_getevents io_pgetevents
io_pgetevents_time64 io_setup io_submit ioctl ioprio_get ioprio_set pipe pipe2 poll ppoll
ppoll_time64 pselect6 pselect6_time64 select _newselect signalfd signalfd4 timerfd_create
timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64
"""
MEMORY = """
arch_prctl brk cachestat futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake
get_robust_list get_thread_area madvise map_shadow_stack membarrier mincore mlock mlock2
mlockall mmap mmap2 mprotect mremap mseal msync munlock munlockall munmap pkey_alloc
pkey_free pkey_mprotect process_mrelease remap_file_pages rseq set_robust_list
set_thread_area set_tid_address
"""
PROCESSES = """
capget capset execve execveat exit exit_group fork getcpu getegid getegid32 geteuid
geteuid32 getgid getgid32 getgroups getgroups32 getpgid getpgrp getpid getppid getpriority
getresgid getresgid32 getresuid getresuid32 getrlimit getrusage getsid gettid getuid
getuid32 landlock_add_rule landlock_create_ruleset landlock_restrict_self pidfd_open
pidfd_send_signal prctl prlimit64 restart_syscall sched_get_priority_max
sched_get_priority_min sched_getaffinity sched_getattr sched_getparam sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp setfsgid setfsgid32 setfsuid
setfsuid32 setgid setgid32 setgroups setgroups32 setpgid setpriority setregid setregid32
setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit setsid setuid
setuid32 sysinfo times ugetrlimit uname vfork wait4 waitid waitpid
"""
SIGNALS_AND_TIME = """
adjtimex alarm clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 getitimer gettimeofday kill
nanosleep pause rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo setitimer sigaction
sigaltstack signal sigpending sigprocmask sigreturn sigsuspend tgkill time timer_create
timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64
tkill
"""
IPC_AND_NETWORK = """
accept accept4 bind connect getpeername getsockname getsockopt ipc listen mq_getsetattr
mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64
mq_unlink msgctl msgget msgrcv msgsnd recv recvfrom recvmmsg recvmmsg_time64 recvmsg semctl
semget semop semtimedop semtimedop_time64 send sendmmsg sendmsg sendto setsockopt shmat
shmctl shmdt shmget shutdown socketcall socketpair
"""
# ptrace is safe since kernel 4.8 (seccomp is re-checked after a tracer changes a call).
PTRACE = "process_vm_readv process_vm_writev ptrace"
ARCH_SPECIFIC = {
    "x86_64": "", "i686": "",
    "aarch64": "arm_fadvise64_64 arm_sync_file_range breakpoint cacheflush set_tls sync_file_range2",
    "ppc64le": "sync_file_range2 swapcontext",
    "s390x": "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr",
    "riscv64": "riscv_flush_icache riscv_hwprobe",
}
# Calls that come back with a capability (--cap-add, --privileged).
BY_CAPABILITY = {
    "CAP_SYS_ADMIN": "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie "
                     "mount mount_setattr move_mount name_to_handle_at open_tree perf_event_open "
                     "quotactl quotactl_fd setdomainname sethostname setns syslog umount umount2 unshare",
    "CAP_SYS_BOOT": "reboot",
    "CAP_SYS_CHROOT": "chroot",
    "CAP_SYS_MODULE": "delete_module finit_module init_module",
    "CAP_SYS_PACCT": "acct",
    "CAP_SYS_PTRACE": "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    "CAP_SYS_RAWIO": "ioperm iopl",
    "CAP_SYS_TIME": "clock_settime clock_settime64 settimeofday stime",
    "CAP_SYS_TTY_CONFIG": "vhangup",
    "CAP_SYS_NICE": "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    "CAP_SYSLOG": "syslog",
    "CAP_BPF": "bpf",
    "CAP_PERFMON": "perf_event_open",
}
# clone with any of CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET is refused.
CLONE_NS_FLAGS = 0x7E020000
# personality: only the harmless values (Linux, 32-bit compat, no ASLR, query).
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
AF_VSOCK = 40
EPERM, ENOSYS = 1, 38
ARCHITECTURES = {
    "x86_64": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "aarch64": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
    "ppc64le": ["SCMP_ARCH_PPC64LE"],
    "s390x": ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
    "riscv64": ["SCMP_ARCH_RISCV64"],
}


def _allow(names, *args):
    rule = {"names": sorted(names), "action": "SCMP_ACT_ALLOW"}
    if args:
        rule["args"] = list(args)
    return rule


def _arg(index, op, value, value_two=0):
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


def default_profile(capabilities=()) -> dict:
    """The OCI `linux.seccomp` for a container with these capabilities (bounding set)."""
    caps = {c if c.startswith("CAP_") else "CAP_" + c for c in capabilities}
    base = " ".join([FILES, EVENTS, MEMORY, PROCESSES, SIGNALS_AND_TIME, IPC_AND_NETWORK, PTRACE,
                     ARCH_SPECIFIC.get(os.uname().machine, "")]).split()
    extra = set()
    for cap, names in BY_CAPABILITY.items():
        if cap in caps:
            extra.update(names.split())
    rules = [_allow(set(base) | extra)]
    rules += [_allow(["personality"], _arg(0, "SCMP_CMP_EQ", p)) for p in PERSONALITIES]
    rules.append(_allow(["socket"], _arg(0, "SCMP_CMP_NE", AF_VSOCK)))
    if "CAP_SYS_ADMIN" not in caps:
        rules.append(_allow(["clone"], _arg(0, "SCMP_CMP_MASKED_EQ", CLONE_NS_FLAGS, 0)))
        # ENOSYS, not EPERM: C libraries then fall back to clone, which we can filter.
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": EPERM,
            "architectures": ARCHITECTURES.get(os.uname().machine, []), "syscalls": rules}
