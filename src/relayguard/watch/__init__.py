"""`relayguard watch`: follow the mail log (files or journald) and the queue, run the detectors
of `analyze` on a sliding window, ban brute-force attackers at once, alert, and respond.

`follow` (files, rotation, checkpoints), `journald`, `windows` (sliding aggregates, brute-force
counter), `queuepoll` (queue size with hysteresis), `daemon` (the loop), `cli` (the command).
"""

from .daemon import Watcher, WatchError

__all__ = ["WatchError", "Watcher"]
