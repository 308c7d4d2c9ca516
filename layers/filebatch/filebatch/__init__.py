"""filebatch shared package: models, services, adapters and config used by every Lambda handler.

Importing it creates no AWS client and reads no environment variable (cold starts are a feature).
"""
