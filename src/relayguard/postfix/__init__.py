"""The one door to Postfix: its programs (found and run with ``-c DIR``), ``postconf``, the
``mynetworks`` match-list model, and map files (atomic writes, ``postmap`` aside, reloads)."""
