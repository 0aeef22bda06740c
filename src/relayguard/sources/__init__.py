"""Where log lines come from: files (plain, gzip, bzip2, xz — detected by content), stdin."""

from .files import InputError, NothingUnderstood, default_logs, open_lines, order_by_time

__all__ = ["InputError", "NothingUnderstood", "default_logs", "open_lines", "order_by_time"]
