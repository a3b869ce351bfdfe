"""docker run's resource flags, turned into an OCI `linux.resources` dict.

    -m/--memory 256m         memory.limit = 268435456 (at least 6 MiB)
    --memory-swap 512m | -1  memory.swap = memory + swap, or -1 for unlimited;
                             unset: twice the memory, as docker does
    --cpus 1.5               cpu.quota = 150000 per cpu.period = 100000 (CFS)
    --cpu-shares 512         cpu.shares (relative weight; default 1024)
    --cpuset-cpus 0-1,3      cpu.cpus
    --pids-limit 100 | -1    pids.limit (default 2048: minidocker's choice)

Sizes are binary (1k = 1024), as in docker. Every bad value is refused with
docker's message and exit code 125, before anything is created. Pure: nothing
here touches the host except reading how many CPUs it has.
"""
import os
import re

from .errors import MinidockerError

MIN_MEMORY = 6 * 1024 * 1024  # below this the runtime itself would not fit
DEFAULT_PIDS_LIMIT = 2048
CFS_PERIOD = 100_000  # microseconds: 100 ms, the kernel's default
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?) ?([kmgtp]?)i?b?$", re.IGNORECASE)
_CPU_LIST = re.compile(r"^\d+(-\d+)?(,\d+(-\d+)?)*$")


def _dev(kind, major, minor):
    return {"allow": True, "type": kind, "major": major, "minor": minor, "access": "rwm"}


# Docker's device cgroup: deny everything, then let the container make any node
# (m) but read/write only null, zero, full, random, urandom, tty, console, the
# pty master and slaves, and tun; /dev/fuse stays denied explicitly.
DEFAULT_DEVICES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": None, "minor": None, "access": "m"},
    {"allow": True, "type": "b", "major": None, "minor": None, "access": "m"},
    _dev("c", 1, 3), _dev("c", 1, 5), _dev("c", 1, 7), _dev("c", 1, 8), _dev("c", 1, 9),
    _dev("c", 5, 0), _dev("c", 5, 1), _dev("c", 5, 2), _dev("c", 136, None), _dev("c", 10, 200),
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
]


def parse_size(text, flag: str = "-m, --memory") -> int:
    """'512m' -> 536870912, with docker's message for anything else."""
    m = _SIZE.match(str(text).strip())
    if not m:
        raise MinidockerError(f'invalid argument "{text}" for "{flag}" flag: invalid size: \'{text}\'', 125)
    from fractions import Fraction   # exact: 1.5g is 1610612736, not a float's guess
    return int(Fraction(m.group(1)) * _UNITS[m.group(2).lower()])


def _integer(text, flag: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise MinidockerError(f'invalid argument "{text}" for "{flag}" flag: '
                              f'strconv.ParseInt: parsing "{text}": invalid syntax', 125) from None


def _cpu_set(text: str) -> set:
    cpus = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def online_cpus() -> str:
    """The host's online CPUs as the kernel lists them, e.g. '0-7'."""
    with open("/sys/devices/system/cpu/online") as f:
        return f.read().strip()


def resources(memory=None, memory_swap=None, cpus=None, cpu_shares=None, cpuset_cpus=None,
              pids_limit=None, privileged=False, host_cpus=None, host_online=None) -> dict:
    """docker run's flag values (strings, as typed, or None) -> OCI linux.resources."""
    out = {}
    mem = {}
    if memory is not None:
        mem["limit"] = parse_size(memory)
        if mem["limit"] < MIN_MEMORY:
            raise MinidockerError("Minimum memory limit allowed is 6MB", 125)
    if memory_swap is not None and str(memory_swap).strip() != "0":  # 0: unset
        swap = -1 if str(memory_swap).strip() == "-1" else parse_size(memory_swap, "--memory-swap")
        if "limit" not in mem:
            raise MinidockerError("You should always set the Memory limit when using "
                                  "Memoryswap limit, see usage", 125)
        if swap != -1 and swap < mem["limit"]:
            raise MinidockerError("Minimum memoryswap limit should be larger than memory limit, "
                                  "see usage", 125)
        mem["swap"] = swap
    elif "limit" in mem:
        mem["swap"] = 2 * mem["limit"]  # docker: as much swap as memory
    if mem:
        out["memory"] = mem

    cpu = {}
    if cpus is not None:
        from fractions import Fraction
        n = host_cpus or len(os.sched_getaffinity(0))
        try:
            wanted = Fraction(str(cpus).strip())
        except ValueError:
            raise MinidockerError(f'invalid argument "{cpus}" for "--cpus" flag: '
                                  f'failed to parse {cpus} as a rational number', 125) from None
        if not Fraction(1, 100) <= wanted <= n:
            raise MinidockerError(f"Range of CPUs is from 0.01 to {n}.00, as there are only "
                                  f"{n} CPUs available", 125)
        cpu["quota"], cpu["period"] = int(wanted * CFS_PERIOD), CFS_PERIOD
    if cpu_shares is not None:
        shares = _integer(cpu_shares, "-c, --cpu-shares")
        if shares < 0:
            raise MinidockerError(f"invalid CPU shares {shares}: must be 0 (default) or more", 125)
        if shares:
            cpu["shares"] = min(max(shares, 2), 262144)  # the kernel's range; it clamps too
    if cpuset_cpus is not None:
        text = str(cpuset_cpus).strip()
        if not _CPU_LIST.match(text):
            raise MinidockerError(f"Invalid value {cpuset_cpus} for cpuset cpus", 125)
        online = host_online or online_cpus()
        if not _cpu_set(text) <= _cpu_set(online):
            raise MinidockerError(f"Requested CPUs are not available - requested {text}, "
                                  f"available: {online}", 125)
        cpu["cpus"] = text
    if cpu:
        out["cpu"] = cpu

    limit = DEFAULT_PIDS_LIMIT if pids_limit is None else _integer(pids_limit, "--pids-limit")
    if limit < -1:
        raise MinidockerError(f"invalid --pids-limit {limit}: use -1 for unlimited", 125)
    out["pids"] = {"limit": -1 if limit <= 0 else limit}  # 0, like -1: no limit
    out["devices"] = [{"allow": True, "access": "rwm"}] if privileged else \
        [dict(rule) for rule in DEFAULT_DEVICES]
    return out
