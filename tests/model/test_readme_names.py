"""The README's table of names on the wire is exactly what netwarden/model/names.py defines."""

from pathlib import Path

from netwarden.model.names import wire_names_table


def test_readme_lists_every_name_netwarden_writes() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("<!-- names:begin -->", 1)[1].split("<!-- names:end -->", 1)[0].strip()
    assert section == wire_names_table(), "regenerate with: python -m netwarden.model.names"
