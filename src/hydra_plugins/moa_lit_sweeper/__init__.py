"""moa-lit's Hydra plugins. ``hydra_plugins`` is a namespace package shared by
every installed Hydra plugin, so ``src/hydra_plugins`` has no ``__init__.py``."""
