"""neox-cpt: continual pre-training for GPT-NeoX (Ibrahim et al. 2024, arXiv 2403.08763).

The core (``neox_cpt.schedules``, ``neox_cpt.data``) imports neither torch nor NeoX; adapters that
need torch import it lazily. Example::

    >>> import neox_cpt
    >>> neox_cpt.__version__ >= "0.1"
    True
"""
from neox_cpt.version import __version__

__all__ = ["__version__", "install"]


def install(**kwargs):
    """Install the GPT-NeoX hook in this process (for tests and custom entry points).

    See ``neox_cpt.neox.hook.install`` and docs/neox.md.
    """
    from neox_cpt.neox.hook import install as _install

    return _install(**kwargs)
