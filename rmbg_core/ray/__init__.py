"""Background removal on Ray Data (``pip install 'rmbg-kit[ray]'``), for jobs larger than one machine.

:class:`RemoveBackground` is the ``Dataset.map_batches`` stage for your own pipelines; ``rmbg remove
... --engine ray`` (:mod:`rmbg_core.ray.command`) runs the command line's job on a cluster. Importing
this package does not import Ray; ``rmbg_core`` itself never imports this package.
"""

from .predictor import RemoveBackground

__all__ = ["RemoveBackground"]
