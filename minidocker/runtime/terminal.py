"""A terminal for the container, from the container's own devpts.

runc's --console-socket protocol: the caller listens on a unix socket; the
runtime creates the pty *inside* the container (so the notebook's or the
user's own terminal never enters it, TIOCSTI), and sends the master end over
the socket as SCM_RIGHTS ancillary data, with the pty's name as the message.
"""
import fcntl
import os
import socket
import struct
import termios

from .linux import MS_BIND, mount

TIOCGPTN, TIOCSPTLCK, TIOCGPTPEER = 0x80045430, 0x40045431, 0x5441


def open_pty():
    """(master fd, slave fd, slave name) from /dev/ptmx of the current root."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))  # unlockpt
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0" * 4))[0]
    # TIOCGPTPEER opens the slave through the master: no path lookup to race.
    slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    return master, slave, f"/dev/pts/{number}"


def send_master(sock_fd: int, master: int, name: str) -> None:
    """Hand the master end to whoever listens on the console socket."""
    with socket.socket(fileno=sock_fd) as sock:
        socket.send_fds(sock, [name.encode()], [master])


def make_console(slave: int) -> None:
    """Bind the pty onto /dev/console and make it our stdio and controlling terminal."""
    if not os.path.exists("/dev/console"):
        os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
    mount(f"/proc/self/fd/{slave}", "/dev/console", None, MS_BIND)
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)


def receive_master(sock: socket.socket):
    """The other side (used by `run -t` and the tests): accept, return (master fd, name)."""
    conn, _ = sock.accept()
    with conn:
        msg, fds, _flags, _addr = socket.recv_fds(conn, 4096, 1)
    return fds[0], msg.decode()
