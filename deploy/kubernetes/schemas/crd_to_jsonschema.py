"""Converts one version of a CustomResourceDefinition's openAPIV3Schema into a JSON Schema that
check-jsonschema (and `jsonschema`) validate resources against offline, strictly:

- an object that lists its properties accepts no others (Kubernetes would silently prune an
  unknown field, so a misspelt one would be lost without a word), unless the CRD says
  `x-kubernetes-preserve-unknown-fields`;
- `x-kubernetes-int-or-string` becomes integer-or-string, `nullable` adds null;
- apiVersion and kind must be the CRD's own.

    python crd_to_jsonschema.py CRD.yaml VERSION ORIGIN > schema.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml


def strict(node: Any) -> Any:
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items()}
    if out.pop("x-kubernetes-int-or-string", False) and "type" not in out and "anyOf" not in out:
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    preserve = out.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def convert(crd: dict[str, Any], version: str, origin: str) -> dict[str, Any]:
    spec = crd["spec"]
    (served,) = [v for v in spec["versions"] if v["name"] == version]
    schema: dict[str, Any] = strict(served["schema"]["openAPIV3Schema"])
    schema["properties"]["apiVersion"] = {"enum": [f"{spec['group']}/{version}"]}
    schema["properties"]["kind"] = {"enum": [spec["names"]["kind"]]}
    schema["required"] = sorted({*schema.get("required", ()), "apiVersion", "kind", "metadata"})
    return {"$schema": "http://json-schema.org/draft-07/schema#", "$comment": origin, **schema}


def main() -> None:
    path, version, origin = sys.argv[1:4]
    crd = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    json.dump(convert(crd, version, origin), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
