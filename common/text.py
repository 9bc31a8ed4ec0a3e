"""Text a peer sent, bounded before it is quoted (in an error reply, a log line, an error message)."""

from __future__ import annotations


def clip(text: str, limit: int) -> str:
    """``text`` if at most ``limit`` characters, else its head and how long it was, ``limit`` characters in all
    (clipping again changes nothing)."""
    if len(text) <= limit:
        return text
    tail = f"...[{len(text)} chars]"
    return text[: max(0, limit - len(tail))] + tail
