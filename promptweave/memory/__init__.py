"""Long-term dialogue memory by recursive summaries (Wang et al. 2023).

One memory text per conversation, rewritten by the model from (previous memory + the finished
dialogue) with the ``rsum-update`` template and answered from (latest memory + the current
context) with ``rsum-respond``. :class:`MemoryManager` keeps the policy and the budget;
:func:`open_store` gives the SQLite or PostgreSQL store behind one interface.
"""

from __future__ import annotations

from .budget import Budget, approx_tokens, sentences
from .config import MemoryConfig
from .manager import MemoryManager, Reply, ReplyDiscarded, ReplyError
from .store import (ConversationChanged, MemoryVersion, SessionState, SQLStore, StoreUnavailable, Turn, VersionConflict,
                    open_store)

__all__ = ["Budget", "ConversationChanged", "MemoryConfig", "MemoryManager", "MemoryVersion", "Reply", "ReplyDiscarded",
           "ReplyError", "SQLStore", "SessionState", "StoreUnavailable", "Turn", "VersionConflict", "approx_tokens",
           "open_store", "sentences"]
