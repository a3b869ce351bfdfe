"""docker's resource flags -> OCI linux.resources, and docker's refusals (exit 125)."""
import pytest

from minidocker import limits
from minidocker.errors import MinidockerError

MiB = 1 << 20


def refused(**flags) -> str:
    with pytest.raises(MinidockerError) as e:
        limits.resources(host_cpus=4, host_online="0-3", **flags)
    assert e.value.exit_code == 125
    return str(e.value)


@pytest.mark.parametrize("text, size", [
    ("6m", 6 * MiB), ("6M", 6 * MiB), ("512k", 512 * 1024), ("1g", 1 << 30), ("1GB", 1 << 30),
    ("1gib", 1 << 30), ("7340032", 7340032), ("7340032b", 7340032), ("1.5g", 3 << 29), ("10 m", 10 * MiB)])
def test_sizes_are_binary_like_dockers(text, size):
    assert limits.parse_size(text) == size


@pytest.mark.parametrize("text", ["12x", "", "m", "-5m", "1.2.3m", "5mm", "1e3"])
def test_garbage_sizes_are_refused_with_dockers_message(text):
    assert refused(memory=text) == f'invalid argument "{text}" for "-m, --memory" flag: invalid size: \'{text}\''


def test_nothing_given_means_docker_defaults():
    r = limits.resources()
    assert r["pids"] == {"limit": 2048}
    assert "memory" not in r and "cpu" not in r
    assert r["devices"][0] == {"allow": False, "access": "rwm"}


def test_memory_alone_gets_as_much_swap_as_memory():
    assert limits.resources(memory="32m")["memory"] == {"limit": 32 * MiB, "swap": 64 * MiB}


def test_memory_below_6mb_is_refused():
    assert refused(memory="5m") == "Minimum memory limit allowed is 6MB"
    assert limits.resources(memory="6m")["memory"]["limit"] == 6 * MiB


def test_memory_swap_minus_one_is_unlimited_and_equal_means_no_swap():
    assert limits.resources(memory="64m", memory_swap="-1")["memory"]["swap"] == -1
    assert limits.resources(memory="64m", memory_swap="64m")["memory"]["swap"] == 64 * MiB


def test_memory_swap_below_memory_or_without_memory_is_refused():
    assert refused(memory="1g", memory_swap="512m") == \
        "Minimum memoryswap limit should be larger than memory limit, see usage"
    assert refused(memory_swap="1g") == \
        "You should always set the Memory limit when using Memoryswap limit, see usage"
    assert refused(memory="1g", memory_swap="lots").startswith('invalid argument "lots" for "--memory-swap"')


def test_cpus_become_a_cfs_quota_per_100ms():
    assert limits.resources(cpus="0.5")["cpu"] == {"quota": 50000, "period": 100000}
    assert limits.resources(cpus="1.5", host_cpus=4)["cpu"]["quota"] == 150000
    assert limits.resources(cpus="0.01")["cpu"]["quota"] == 1000  # the kernel's minimum


@pytest.mark.parametrize("cpus", ["0", "0.001", "4.5", "-1"])
def test_cpus_out_of_range_are_refused(cpus):
    assert refused(cpus=cpus) == "Range of CPUs is from 0.01 to 4.00, as there are only 4 CPUs available"


def test_cpus_that_are_not_a_number_are_refused():
    assert refused(cpus="half") == 'invalid argument "half" for "--cpus" flag: failed to parse half as a rational number'


def test_cpus_above_this_hosts_count_are_refused():
    import os
    n = len(os.sched_getaffinity(0))
    with pytest.raises(MinidockerError, match=f"only {n} CPUs available"):
        limits.resources(cpus=str(n + 1))


def test_cpu_shares():
    assert limits.resources(cpu_shares="512")["cpu"] == {"shares": 512}
    assert "cpu" not in limits.resources(cpu_shares="0")  # 0: the default weight
    assert limits.resources(cpu_shares="1")["cpu"]["shares"] == 2  # the kernel's floor
    assert "must be 0 (default) or more" in refused(cpu_shares="-3")
    assert refused(cpu_shares="lots") == \
        'invalid argument "lots" for "-c, --cpu-shares" flag: strconv.ParseInt: parsing "lots": invalid syntax'


def test_cpuset_cpus():
    assert limits.resources(cpuset_cpus="0-1,3", host_online="0-3")["cpu"] == {"cpus": "0-1,3"}
    assert refused(cpuset_cpus="0-a") == "Invalid value 0-a for cpuset cpus"
    assert refused(cpuset_cpus="2-5") == "Requested CPUs are not available - requested 2-5, available: 0-3"


def test_pids_limit():
    assert limits.resources(pids_limit="64")["pids"] == {"limit": 64}
    assert limits.resources(pids_limit="-1")["pids"] == {"limit": -1}
    assert limits.resources(pids_limit="0")["pids"] == {"limit": -1}
    assert refused(pids_limit="-2") == "invalid --pids-limit -2: use -1 for unlimited"
    assert refused(pids_limit="many").startswith('invalid argument "many" for "--pids-limit" flag')


def test_default_devices_deny_all_then_allow_dockers_list():
    devices = limits.resources()["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}
    allowed = {(d["type"], d["major"], d["minor"], d["access"]) for d in devices[1:] if d["allow"]}
    for major, minor in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2), (136, None), (10, 200)]:
        assert ("c", major, minor, "rwm") in allowed
    assert ("c", None, None, "m") in allowed and ("b", None, None, "m") in allowed
    assert devices[-1] == {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"}
    assert limits.resources(privileged=True)["devices"] == [{"allow": True, "access": "rwm"}]


def test_the_result_is_a_fresh_dict_each_time():
    a = limits.resources()
    a["devices"][0]["access"] = "r"
    assert limits.resources()["devices"][0]["access"] == "rwm"
