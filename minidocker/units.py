"""Numbers and times the way docker prints them: 4.26MB, "3 minutes ago"."""
import time
from datetime import datetime, timezone


def human_size(n: float) -> str:
    """Decimal units, three significant digits, as docker images shows sizes."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}"
        n /= 1000
    return f"{n}B"


def human_duration(seconds: float) -> str:
    """docker's units.HumanDuration: "Less than a second", "About a minute", "3 hours"."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def ago(timestamp: str) -> str:
    """'2024-05-01T10:00:00Z' -> '3 minutes ago'."""
    then = parse_time(timestamp)
    if then is None:
        return "N/A"
    return human_duration(time.time() - then) + " ago"


def now_iso() -> str:
    """The current time as RFC 3339 with nanoseconds, like docker's timestamps."""
    ns = time.time_ns()
    return datetime.fromtimestamp(ns // 10**9, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns % 10**9:09d}Z"


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text):
    """RFC 3339 (any fraction length, Z or offset) to seconds since the epoch, or None."""
    if not text or text.startswith("0001-01-01"):
        return None
    main, frac, zone = text, 0.0, "+00:00"
    if text.endswith("Z"):
        main = text[:-1]
    elif len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        main, zone = text[:-6], text[-6:]
    if "." in main:
        main, digits = main.split(".", 1)
        frac = float("0." + digits) if digits.isdigit() else 0.0
    try:
        return datetime.fromisoformat(main + zone).timestamp() + frac
    except ValueError:
        return None
