"""Placeholder until this function is built."""


def lambda_handler(event, context):
    raise NotImplementedError
