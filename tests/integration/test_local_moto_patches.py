"""The local stack's fixes to moto keep DynamoDB's semantics: transactions still roll back whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from filebatch_local.provision import install_moto_patches


@pytest.fixture
def table() -> Iterator[Any]:
    install_moto_patches()
    with mock_aws():
        dynamodb = boto3.resource("dynamodb", region_name="us-east-1")
        created = dynamodb.create_table(
            TableName="t",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        created.put_item(Item={"pk": "b", "sk": "BATCH", "uploaded": 0})
        created.put_item(Item={"pk": "b", "sk": "FILE#1", "status": "uploaded"})
        yield created


def transact(table: Any, file_status_required: str) -> None:
    table.meta.client.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": "t", "Item": {"pk": "b", "sk": "NEW"}}},
            {
                "Update": {
                    "TableName": "t",
                    "Key": {"pk": "b", "sk": "BATCH"},
                    "UpdateExpression": "ADD uploaded :one",
                    "ExpressionAttributeValues": {":one": 1},
                }
            },
            {
                "Update": {
                    "TableName": "t",
                    "Key": {"pk": "b", "sk": "FILE#1"},
                    "UpdateExpression": "SET #s = :done",
                    "ConditionExpression": "#s = :required",
                    "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":done": "completed", ":required": file_status_required},
                }
            },
        ]
    )


def test_a_cancelled_transaction_leaves_every_item_as_it_was(table: Any) -> None:
    # Given items before a transaction whose last condition fails
    # When it runs
    with pytest.raises(ClientError, match="TransactionCanceled"):
        transact(table, file_status_required="awaiting_upload")
    # Then the put did not happen and the applied update was rolled back
    assert "Item" not in table.get_item(Key={"pk": "b", "sk": "NEW"})
    assert table.get_item(Key={"pk": "b", "sk": "BATCH"})["Item"]["uploaded"] == 0
    assert table.get_item(Key={"pk": "b", "sk": "FILE#1"})["Item"]["status"] == "uploaded"


def test_a_successful_transaction_applies_every_item(table: Any) -> None:
    transact(table, file_status_required="uploaded")
    assert "Item" in table.get_item(Key={"pk": "b", "sk": "NEW"})
    assert table.get_item(Key={"pk": "b", "sk": "BATCH"})["Item"]["uploaded"] == 1
    assert table.get_item(Key={"pk": "b", "sk": "FILE#1"})["Item"]["status"] == "completed"
