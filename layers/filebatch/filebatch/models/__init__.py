"""Models, kept apart by boundary: `api` (HTTP), `domain` (the business), `records` (DynamoDB
items), `workflow` (Step Functions task payloads)."""
