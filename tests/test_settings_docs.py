"""docs/configuration.md is generated from the typed settings: it cannot drift."""

from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_the_committed_reference_is_what_the_settings_generate():
    from moa_lit.config import reference_markdown

    assert DOC.read_text() == reference_markdown(), (
        "docs/configuration.md is stale: regenerate it with python -m moa_lit.config > docs/configuration.md"
    )


def test_the_reference_lists_every_typed_key_with_its_range():
    text = DOC.read_text()
    for line in ("| `cv.n_folds` | whole number | `5` | a whole number >= 2 |",
                 "| `model.net.dropout_input` | number | `0.2` | a number >= 0 and < 1 |",
                 "| `explain` | boolean | `false` | true or false |"):
        assert line in text, line
