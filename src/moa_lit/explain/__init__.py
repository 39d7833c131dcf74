"""Predictions a biologist can act on (docs/explain.md): per compound its MoA
calls (``pooling``), the inputs behind each (``attributions``) and the nearest
known compounds (``neighbours``), written by ``batch``. It sees a run only
through ``networks.FoldNetwork``, not through its folder's layout."""
