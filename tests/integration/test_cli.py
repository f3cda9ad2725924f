"""``leap-tracker`` (leap_tracker_cli) against moto: ``hash`` finds the stack's log hash key by flag, by
stack (its output, else its resource) or by environment, and prints the pseudonym the logs show."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from leap_tracker.privacy import Pseudonyms
from leap_tracker_cli import main as cli
from leap_tracker_cli.discovery import Discovery, Resource

REGION = "us-east-1"
STACK_KEY = "Gq7Zb1Xk9PwL3mRt8VnC2sYd6HfJ4aEu0TiKoQ5lNcWxMzByAvDgSe7RhUjIpOqF"  # as GenerateSecretString
GUIDE_ENTRY_ID = "CAISO_62631455-9dfd-433b-9482-fd043f2336d4_Test1012"


@pytest.fixture
def aws() -> Iterator[str]:
    """moto with the stack's key secret and a stack (moto's CloudFormation) whose output names it."""
    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name=REGION)
        arn = secrets.create_secret(Name="LogHashKeySecret-AbC", SecretString=STACK_KEY)["ARN"]
        template = {
            "Resources": {"OutreachRequestsQueue": {"Type": "AWS::SQS::Queue"}},
            "Outputs": {"LogHashKeySecretArn": {"Value": arn}},
        }
        boto3.client("cloudformation", region_name=REGION).create_stack(
            StackName="leap-connect-tracker", TemplateBody=json.dumps(template)
        )
        yield arn


def run(capsys: pytest.CaptureFixture[str], *argv: str, environ: dict[str, str] | None = None) -> Any:
    """(exit status, stdout, stderr) of ``leap-tracker argv``, in an environment of ``environ`` only."""
    status = cli.main(list(argv), environ=environ or {})
    out = capsys.readouterr()
    return status, out.out, out.err


STACK = Pseudonyms.from_secret(STACK_KEY)


def test_hash_prints_the_reference_ids_pseudonym_with_the_stacks_key(
    aws: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "hash", "--ref-id", "Test1012", "--stack-name", "leap-connect-tracker")

    assert (status, err) == (0, "")
    assert out == f"{STACK.ref('Test1012')}\n"


def test_hash_of_an_entry_id_by_the_secrets_arn_as_one_json_document(
    aws: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "hash", "--entry-id", GUIDE_ENTRY_ID, "--key-secret-arn", aws, "--json")

    assert status == 0
    assert json.loads(out) == {
        "kind": "entry",
        "pseudonym": STACK.entry(GUIDE_ENTRY_ID),
        "key_source": f"--key-secret-arn ({aws})",
    }
    assert GUIDE_ENTRY_ID not in out  # the answer never repeats the identifier


def test_hash_reads_the_variables_the_functions_read(aws: str, capsys: pytest.CaptureFixture[str]) -> None:
    by_secret = run(capsys, "hash", "--ref-id", "Test1012", environ={"LOG_HASH_KEY_SECRET_ARN": aws})
    local_key = "a-local-log-hash-key-of-at-least-32-characters"
    by_local_key = run(capsys, "hash", "--ref-id", "Test1012", environ={"LOG_HASH_KEY": local_key})

    assert by_secret == (0, f"{STACK.ref('Test1012')}\n", "")
    assert by_local_key == (0, f"{Pseudonyms.from_secret(local_key).ref('Test1012')}\n", "")


@pytest.mark.parametrize(
    ("argv", "environ", "says"),
    [
        (["--ref-id", "R"], {}, "no log hash key: pass --stack-name or --key-secret-arn"),
        (["--ref-id", "R", "--stack-name", "elsewhere"], {}, "no stack 'elsewhere' in this account"),
        (["--ref-id", "R", "--stack-name", "s", "--key-secret-arn", "arn"], {}, "pass one of them"),
        (["--ref-id", "R"], {"LOG_HASH_KEY": "too-short"}, "LOG_HASH_KEY: the log hash key has 9 bytes"),
    ],
    ids=["no-key-anywhere", "unknown-stack", "two-sources", "short-local-key"],
)
def test_what_hash_cannot_do_is_exit_status_2_saying_what_to_pass(
    aws: str, capsys: pytest.CaptureFixture[str], argv: list[str], environ: dict[str, str], says: str
) -> None:
    status, out, err = run(capsys, "hash", *argv, environ=environ)

    assert (status, out) == (2, "")
    assert says in err


def test_an_aws_refusal_is_exit_status_1_and_one_json_document_with_json(
    aws: str, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = aws.replace("LogHashKeySecret-AbC", "gone-XyZ")

    status, out, _ = run(capsys, "hash", "--ref-id", "R", "--key-secret-arn", missing, "--json")

    assert status == 1
    assert json.loads(out)["error"].startswith("AWS: ResourceNotFoundException")


def test_a_stack_without_the_output_is_searched_by_logical_id(aws: str) -> None:
    # Discovery is shared by every subcommand: a resource without an output is found by its logical id.
    queue = Resource("the queue", "--queue-url", "NoSuchOutput", "OutreachRequestsQueue", "QUEUE_URL")
    discovery = Discovery(
        client=cli._boto3_clients(REGION, None), environ={}, stack_name="leap-connect-tracker"
    )

    found = discovery.require(queue)

    assert found.value.startswith("https://sqs.us-east-1.amazonaws.com/")
    assert found.source == "stack leap-connect-tracker resource OutreachRequestsQueue"
    assert discovery.require(Resource("x", "--x", "LogHashKeySecretArn", "X", "X")).value == aws
