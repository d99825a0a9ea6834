"""The embedded store as a Kinesis Data Streams endpoint (AWS JSON 1.1 over HTTP/1.1, loopback).

Layers, each importing only the ones below it and the store (never config, CLI or sinks):
``http`` (a small asyncio HTTP/1.1 server), ``sigv4`` (optional signature checks),
``iterators`` (self-describing, HMAC'd shard iterators), ``streams`` / ``records`` (the
operations), ``api`` (dispatch, errors, JSON), ``server`` (all of it on one listening socket).
"""
