"""The sample consumer (app.py): a package so the local runner and the tests import it as
subscriber.consumer.app."""
