"""GPT-NeoX plugin: continual pre-training stages for an *unmodified* GPT-NeoX checkout.

Installing neox-cpt drops ``neox_cpt_hook.pth`` into site-packages; its one ``import`` line calls
:func:`neox_cpt.neox.hook.install_at_startup`, which registers a stdlib-only post-import hook for the few
``megatron.*`` modules the plugin patches (nothing happens in a process that never imports ``megatron``).
``NEOX_CPT_DISABLE=1`` turns it off. See docs/neox.md. Example (no NeoX needed)::

    >>> from neox_cpt.neox.hook import PATCHED_MODULES
    >>> sorted(PATCHED_MODULES)
    ['megatron.neox_arguments.arguments', 'megatron.training']

This package imports nothing heavy at import time: torch, DeepSpeed and megatron are imported by the
patch functions only once NeoX itself has imported them.
"""
