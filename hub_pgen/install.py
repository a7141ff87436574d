"""How to add an optional part (an extra) to the hub-pgen that is running: what a TIP says."""

from __future__ import annotations

from pathlib import Path

_FOLDER = Path(__file__).resolve().parent.parent  # the project folder, when run from a checkout


def installed_from_index() -> bool:
    """hub-pgen lives in site-packages (a wheel from an index), not in a checkout (``pip install -e .``)."""
    return any(part in ("site-packages", "dist-packages") for part in Path(__file__).resolve().parts)


def pip_install(extra: str) -> str:
    """``pip install "hub-pgen[EXTRA]"``, or for a checkout (the README's ``pip install -e .``) the same
    from that folder: ``pip install -e ".[EXTRA]"`` (``.`` when it is the current folder)."""
    if installed_from_index() or not (_FOLDER / "pyproject.toml").is_file():
        return f'pip install "hub-pgen[{extra}]"'
    where = "." if _FOLDER == Path.cwd().resolve() else str(_FOLDER)
    return f'pip install -e "{where}[{extra}]"'
