"""Predictions a biologist can act on: one MoA call per compound with how well
its replicates agree (``pooling``), the genes and cell lines behind each call
(``attributions``, Integrated Gradients through captum), the nearest known
compounds in the networks' learned representation (``neighbours``), written as
``calls.csv``, ``explanations.json`` and one self-contained HTML page
(``page``, ``batch``).

Everything here works on a small interface (``networks.FoldNetwork``): per
seed x fold model, a function from feature rows to the network's input tensor
and the torch network itself, so it does not depend on how a run directory is
laid out or loaded."""
