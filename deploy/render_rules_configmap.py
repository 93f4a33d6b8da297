"""Write deploy/rules-configmap.yaml from the rule files in rules/, so that the ConfigMap the
Deployment mounts holds exactly the rules that `autotuner check` and the rule tests cover.

Run from the repository root:  python deploy/render_rules_configmap.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules"
OUTPUT = ROOT / "deploy" / "rules-configmap.yaml"

HEADER = (
    "# Generated from rules/*.yaml by deploy/render_rules_configmap.py; edit the rule files,\n"
    "# then run that script. The daemon reloads the rules when the ConfigMap changes.\n"
)


class _LiteralDumper(yaml.SafeDumper):
    pass


def _literal(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_LiteralDumper.add_representer(str, _literal)


def render() -> str:
    files = sorted(p for p in RULES.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "autotuner-rules",
            "namespace": "autotuner",
            "labels": {"app.kubernetes.io/name": "autotuner"},
        },
        "data": {file.name: file.read_text(encoding="utf-8") for file in files},
    }
    body = yaml.dump(manifest, Dumper=_LiteralDumper, sort_keys=False, width=100)
    return HEADER + body


def main() -> int:
    OUTPUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
