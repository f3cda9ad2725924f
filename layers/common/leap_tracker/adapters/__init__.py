"""Adapters: HTTP, DynamoDB, SNS and outreach channels. Clients are created lazily or injected."""
