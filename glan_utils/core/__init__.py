"""The ground floor: errors, records (pydantic, content-hash ids), append-only JSONL, the run directory's file
names (`paths`), the process pool, the sandbox for untrusted Python and the other plain mechanisms every
wing uses.

May import: no other wing (the standard library and third-party packages only).
"""
