"""A reward server (``python -m vlmrm.serve``) with dynamic batching, and its Python client.

``Client`` is imported on first use, so ``import vlmrm.serve`` loads neither FastAPI nor httpx.
"""


def __getattr__(name: str):
    if name == "Client":
        from vlmrm.serve.client import Client

        return Client
    raise AttributeError(f"module 'vlmrm.serve' has no attribute {name!r}")
