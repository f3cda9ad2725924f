"""Print template.yaml as CloudFormation receives it: after the AWS SAM transform (for scanners).

    python -m devtools.transformed_template > .aws-sam/transformed.json
    python -m devtools.transformed_template --parameter KmsKeyArn=arn:aws:kms:... --output t.json
    python -m devtools.transformed_template --template subscriber/template.yaml \
        --default DeploySampleConsumer=true [--untransformed] --output s.json

The transform is the local runner's (``samtranslator``, what the ``AWS::Serverless-2016-10-31``
transform is built on). Parameters without a default get a placeholder of the right shape; SAM
substitutes few of them, so Conditions and ``Fn::If`` stay in the output for a scanner to see both ways.
checkov, though, evaluates Conditions on the parameters' defaults and skips the resources whose
condition is false: ``--default NAME=VALUE`` changes a default in the output (and so in the transform),
so an optional part is scanned too; ``--untransformed`` prints the template as written (as JSON).
A function's ``FunctionUrlConfig`` becomes an ``AWS::Lambda::Url`` resource of its own, which SAM gives
none of the function's ``Metadata``: the function's checkov skips (their reasons written once, on the
function) are carried over to it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from devtools.local_runner.template import load_sam_template, resolve_parameters, transform

REPO = Path(__file__).resolve().parents[1]
# Values for the parameters that have no default: placeholders with the shape the template demands.
PLACEHOLDERS = {
    "LeapApiKeySecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:leap/api-key-AbCdEf",
    "EventsTopicArn": "arn:aws:sns:us-east-1:123456789012:leap-connect-tracker-events",  # subscriber/
}
REGION = "us-east-1"


def transformed(
    template: Path,
    overrides: dict[str, str],
    defaults: dict[str, str] | None = None,
    *,
    sam_only: bool = False,
) -> dict[str, Any]:
    sam = with_defaults(load_sam_template(template), defaults or {})
    if sam_only:
        return sam
    declared = sam.get("Parameters", {})
    values = {name: value for name, value in PLACEHOLDERS.items() if name in declared}
    parameters = resolve_parameters(declared, values | overrides)
    return with_url_skips(transform(sam, parameters, REGION))


def with_url_skips(cfn: dict[str, Any]) -> dict[str, Any]:
    """Each function URL with its function's checkov skips (see the module docstring)."""
    resources = cfn.get("Resources", {})
    for resource in resources.values():
        if resource.get("Type") != "AWS::Lambda::Url":
            continue
        target = resource.get("Properties", {}).get("TargetFunctionArn")
        function = resources.get(target.get("Ref")) if isinstance(target, dict) else None
        skips = (function or {}).get("Metadata", {}).get("checkov", {}).get("skip")
        if skips:
            resource.setdefault("Metadata", {}).setdefault("checkov", {})["skip"] = skips
    return cfn


def with_defaults(sam: dict[str, Any], defaults: dict[str, str]) -> dict[str, Any]:
    """The template with these parameters' defaults changed (each checked against its constraints)."""
    declared = sam.get("Parameters", {})
    unknown = sorted(set(defaults) - set(declared))
    if unknown:
        raise ValueError(f"--default names unknown parameter(s) {unknown}")
    resolve_parameters({name: declared[name] for name in defaults}, defaults)  # refuses a bad value
    for name, value in defaults.items():
        declared[name]["Default"] = value
    return sam


def _override(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator:
        raise argparse.ArgumentTypeError(f"{text!r} is not Name=Value")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=REPO / "template.yaml")
    parser.add_argument("--parameter", type=_override, action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--default", type=_override, action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--untransformed", action="store_true", help="the template as written, as JSON")
    parser.add_argument("--output", type=Path, help="write here instead of standard output")
    args = parser.parse_args(argv)
    template = transformed(
        args.template, dict(args.parameter), dict(args.default), sam_only=args.untransformed
    )
    text = json.dumps(template, indent=2, sort_keys=True) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
