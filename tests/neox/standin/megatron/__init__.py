"""Stand-in for the few GPT-NeoX names neox-cpt touches (GPT-NeoX ea7aefd8f8e183256992d9fede4d7c71a46d67a5).

Not NeoX code: minimal re-implementations of the *interfaces* (names, signatures, the behaviour the plugin
relies on), each citing the NeoX file:line it stands for. megatron/__init__.py:26 imports NeoXArgs.
"""
from .neox_arguments import NeoXArgs  # noqa: F401  (megatron/__init__.py:26)


def print_rank_0(*message):  # megatron/utils.py print_rank_0
    print(*message)
