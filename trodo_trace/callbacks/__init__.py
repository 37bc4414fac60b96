"""Callback handlers for agent frameworks.

Each module imports its framework only when it is itself imported, so ``import trodo_trace`` never
pulls in LangChain or LlamaIndex.

Example:
    >>> from trodo_trace.callbacks.langchain import TrodoCallbackHandler  # needs langchain-core
    >>> from trodo_trace.callbacks.llamaindex import TrodoLlamaIndexHandler  # needs llama-index-core
"""
