"""The replicated state: the pluggable interface and the key-value store."""

from .machine import StateMachine
from .store import KVStore, encode_command

__all__ = ["KVStore", "StateMachine", "encode_command"]
