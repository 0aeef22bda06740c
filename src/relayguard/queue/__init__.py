"""Queue control: read the Postfix queue (`postqueue -j`, `-p`), select messages (sender,
domains, SASL user, client IP, age…), act on them with `postsuper` (hold, release, requeue,
delete, through operations.py), back them up and restore them. The commands are in
relayguard/cli/queue.py."""

from .actions import ACTIONS, ActResult, postsuper
from .backup import BackupEntry, backup_messages, load_backup, new_backup_dir, reinject
from .postqueue import (
    Envelope,
    QueuedMessage,
    Recipient,
    parse_json_lines,
    parse_json_record,
    parse_mailq,
    parse_postcat_envelopes,
    read_envelopes,
    read_queue,
)
from .select import Selection, Selector, iter_selected, select
from .tools import PostfixTools, QueueError, valid_queue_id

__all__ = [
    "ACTIONS", "ActResult", "BackupEntry", "Envelope", "PostfixTools", "QueueError",
    "QueuedMessage", "Recipient", "Selection", "Selector", "backup_messages", "iter_selected",
    "load_backup", "new_backup_dir", "parse_json_lines", "parse_json_record", "parse_mailq",
    "parse_postcat_envelopes", "postsuper", "read_envelopes", "read_queue", "reinject", "select",
    "valid_queue_id",
]
