"""The replicated state: the pluggable interface and the key-value store."""

from .machine import StateMachine
from .store import KVStore, check_key, check_write, encode_command

__all__ = ["KVStore", "StateMachine", "check_key", "check_write", "encode_command"]
