"""Issue 14.9 (c): the Ansible role's nftables rules replace only Gentbox's own table.

The template is rendered as Ansible would (Jinja2, the role's defaults) and loaded with the real
`nft` inside a private network namespace (`unshare -n`), so the host's own rules are never
touched. Other tables already there (a Docker-like NAT table, another filter table) survive two
applications, and a second application with other ports replaces Gentbox's rules instead of
adding to them.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest
import yaml

ROLE = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "gentbox"
OTHERS = """\
table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        oifname "eth9" masquerade
    }
}
table inet fail2ban {
    chain input {
        type filter hook input priority -1; policy accept;
        ip saddr 192.0.2.66 drop
    }
}
"""


def render(**overrides) -> str:
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    template = jinja2.Template((ROLE / "templates" / "nftables.conf.j2").read_text(), undefined=jinja2.StrictUndefined)
    return template.render(ansible_managed="Ansible managed", **{**defaults, **overrides})


@pytest.fixture
def netns(tmp_path: Path):
    """Run a shell script in a fresh network namespace (its own, empty ruleset); returns stdout."""
    nft = shutil.which("nft") or "/usr/sbin/nft"
    assert Path(nft).exists(), "nft is missing: apt-get install nftables (scripts/test-services.sh does)"

    def run(script: str) -> str:
        path = tmp_path / "steps.sh"
        path.write_text("set -eu\n" + script)
        done = subprocess.run(["unshare", "--net", "bash", str(path)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout
    return run


def tables(ruleset: dict) -> list[tuple[str, str]]:
    return sorted((item["table"]["family"], item["table"]["name"]) for item in ruleset["nftables"] if "table" in item)


def test_applying_the_rules_twice_keeps_other_tables_and_replaces_its_own(netns, tmp_path: Path) -> None:
    others, first, second = tmp_path / "others.nft", tmp_path / "gentbox.nft", tmp_path / "gentbox2.nft"
    others.write_text(OTHERS)
    first.write_text(render())
    second.write_text(render(gentbox_firewall_tcp_ports=[22, 2525]))
    out = netns(f"nft -f {others}\nnft -f {first}\nnft -f {first}\nnft -j list ruleset\necho '<>'\n"
                f"nft -f {second}\nnft -j list ruleset\n")
    after_first, after_second = (json.loads(part) for part in out.split("<>\n"))
    for ruleset in (after_first, after_second):
        assert tables(ruleset) == [("inet", "fail2ban"), ("inet", "gentbox"), ("ip", "nat")]
        chains = sorted((c["chain"]["table"], c["chain"]["name"]) for c in ruleset["nftables"] if "chain" in c)
        assert chains == [("fail2ban", "input"), ("gentbox", "forward"), ("gentbox", "input"),
                          ("gentbox", "output"), ("nat", "postrouting")]
    ports = [json.dumps(r["rule"]["expr"]) for r in after_second["nftables"]
             if "rule" in r and r["rule"]["table"] == "gentbox" and "dport" in json.dumps(r["rule"]["expr"])]
    assert len(ports) == 1 and "2525" in ports[0] and "587" not in ports[0]  # replaced, not added to
    nat = [r for r in after_second["nftables"] if "rule" in r and r["rule"]["table"] == "nat"]
    assert len(nat) == 1 and "masquerade" in json.dumps(nat[0])


def test_the_rules_never_flush_the_whole_ruleset() -> None:
    text = render()
    assert "flush ruleset" not in "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "table inet gentbox {" in text
