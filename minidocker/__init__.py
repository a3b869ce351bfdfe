"""minidocker: a small, real Docker in Python."""
