from .arguments import NeoXArgs  # noqa: F401  (megatron/neox_arguments/__init__.py:52)
