"""Business logic. No boto3, no environment reads: collaborators come in as arguments."""
