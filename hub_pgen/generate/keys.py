"""Which key goes to which server: ``--api-key-env``'s variable wherever the user points it, else
``OPENAI_API_KEY``, else ``HF_TOKEN`` to Hugging Face's own hosts only (never to any other
``--base-url``, where it would be a gift to whoever runs that server)."""

from __future__ import annotations

import os

from hub_pgen.errors import UsageError

# The Hub token goes to Hugging Face's own hosts only (https), and to HF_ENDPOINT's host: never to any
# other --base-url, where it would be a gift to whoever runs that server.
HF_TOKEN_HOSTS = ("huggingface.co", "hf.co")  # and their subdomains (router.huggingface.co, ...)
HF_TOKEN_SUFFIXES = (".huggingface.co", ".hf.co", ".hf.space", ".endpoints.huggingface.cloud")
HF_TOKEN_WHERE = ("https://huggingface.co, https://hf.co and their subdomains (router.huggingface.co), "
                  "https://*.hf.space, https://*.endpoints.huggingface.cloud, and HF_ENDPOINT's host")


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) as httpx will connect: the same parser decides where the key goes."""
    import httpx

    u = httpx.URL(url)
    port = u.port or {"http": 80, "https": 443}.get(u.scheme)
    return u.scheme, u.host.lower().rstrip("."), port


def sends_hub_token(url: str) -> bool:
    """May ``HF_TOKEN`` be sent, unasked, to this server? Only to Hugging Face (see HF_TOKEN_WHERE)."""
    try:
        scheme, host, port = _origin(url)
        endpoint = os.environ.get("HF_ENDPOINT")
        if endpoint and _origin(endpoint) == (scheme, host, port):
            return True
    except Exception:  # noqa: BLE001 - a URL httpx cannot parse gets no token
        return False
    return scheme == "https" and (host in HF_TOKEN_HOSTS or host.endswith(HF_TOKEN_SUFFIXES))


def api_key(env: str | None, url: str | None = None) -> str | None:
    """The key for the server at ``url``: ``--api-key-env``'s variable (sent wherever the user points
    it), else ``OPENAI_API_KEY``, else ``HF_TOKEN`` when ``url`` is a Hugging Face host, else none."""
    if env:
        value = os.environ.get(env)
        if value:
            return value
        raise UsageError(f"--api-key-env {env}: the environment variable {env} is not set",
                         hint=f"export {env}=... (the key is read from there, never from the command line)")
    if os.environ.get("OPENAI_API_KEY"):
        return os.environ["OPENAI_API_KEY"]
    token = os.environ.get("HF_TOKEN")
    return token if token and url is not None and sends_hub_token(url) else None


def hub_token_withheld(env: str | None, url: str) -> bool:
    return not env and not os.environ.get("OPENAI_API_KEY") and bool(os.environ.get("HF_TOKEN")) \
        and not sends_hub_token(url)
