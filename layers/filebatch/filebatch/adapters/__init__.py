"""The only place boto3 is called. Adapters turn botocore errors into filebatch.errors."""
