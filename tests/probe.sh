#!/bin/sh
# What a container can see of its own confinement. The differential test runs
# it under runc and under minidocker-runtime with the same bundle and diffs.
echo "== status"
grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|SigBlk|SigIgn):' /proc/self/status
echo "== mounts (point, options, type, super options)"
awk '{ for (i = 7; $i != "-"; i++) ; print $5, $6, $(i+1), $(i+3) }' /proc/self/mountinfo | sort
echo "== /dev (without std*: they follow whatever stdio the caller passed)"
ls -lLn /dev | awk '$NF ~ /^std/ { next }
                    $1 ~ /^[cb]/ { print $1, $3, $4, $5, $6, $10; next }
                    $1 != "total" { print $1, $3, $4, $NF }'
echo "== who, where"
id
hostname
pwd
echo "== process"
umask
env | sort
cat /proc/self/oom_score_adj
echo "pid $$"
echo "== limits"
ulimit -a
echo "== fds"
ls /proc/self/fd | sort -n | tr '\n' ' '; echo
echo "== masked"
for p in /proc/kcore /proc/keys /proc/timer_list /sys/firmware /proc/acpi; do
    if [ -d "$p" ]; then echo "$p dir, $(ls -A "$p" | wc -l) entries"
    elif [ -e "$p" ]; then echo "$p file, $(wc -c < "$p") bytes"; fi
done
(echo probe > /proc/sys/kernel/domainname) 2>&1 | sed "s/^.*: //"
echo "== net"
cat /proc/net/dev | awk 'NR > 2 { print $1 }'
