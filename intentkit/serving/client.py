"""A small Python client of the service's /v1 API (standard library only).

    from intentkit import Client
    client = Client("http://127.0.0.1:8000", token="...")
    client.predict("hi", user="user-42")  # {"intent", ..., "model_version", "variant"}

Each call has a timeout; connection failures and 502/503/504 (and 429) are retried `retries`
times with a growing pause, at least the Retry-After the service asked for. A feedback row is
sent again only when it certainly was not recorded (a refused connection, 429, 503): after a
timeout it may have been, and a second row would count twice. Any other 4xx is raised at once
as ClientError with the service's one-line detail.
"""
import json
import time
import urllib.error
import urllib.request

from ..errors import IntentkitError

RETRIED_STATUSES = {429, 502, 503, 504}
# Statuses that say the request was refused before it did anything: safe to send again.
REFUSED_STATUSES = {429, 503}


class ClientError(IntentkitError):
    """The service refused the request (status and detail), or could not be reached."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = 10.0,
                 retries: int = 3, backoff: float = 0.2) -> None:
        self.url, self.token = url.rstrip("/"), token
        self.timeout, self.retries, self.backoff = timeout, retries, backoff

    def _call(self, method, path, body=None, repeatable=True):
        """The decoded answer; `repeatable` False: retried only when nothing was done."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url + "/v1" + path, data=data, method=method,
                                             headers=headers)
            pause = self.backoff * 2 ** attempt
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as error:
                detail = _detail(error)
                retried = RETRIED_STATUSES if repeatable else REFUSED_STATUSES
                if error.code not in retried or attempt == self.retries:
                    raise ClientError(f"{method} {path}: {error.code} {detail}", error.code) \
                        from None
                retry_after = error.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    pause = max(pause, float(retry_after))
            except (urllib.error.URLError, OSError) as error:
                refused = isinstance(getattr(error, "reason", error), ConnectionRefusedError)
                if attempt == self.retries or not (repeatable or refused):
                    raise ClientError(f"{method} {path}: cannot reach {self.url} "
                                      f"({getattr(error, 'reason', error)})") from None
            time.sleep(pause)
        raise AssertionError("unreachable")

    def predict(self, text: str, top_k: int = 3, user: str | None = None) -> dict:
        return self._call("POST", "/predict", _routed({"text": text, "top_k": top_k}, user))

    def predict_batch(self, texts: list[str], top_k: int = 3,
                      user: str | None = None) -> list[dict]:
        body = _routed({"texts": list(texts), "top_k": top_k}, user)
        return self._call("POST", "/predict/batch", body)["results"]

    def feedback(self, text: str, predicted: str, correct: str, variant: str | None = None,
                 model_version: str | None = None, user: str | None = None) -> dict:
        body = _routed({"text": text, "predicted": predicted, "correct": correct}, user)
        for name, value in (("variant", variant), ("model_version", model_version)):
            if value is not None:
                body[name] = value
        return self._call("POST", "/feedback", body, repeatable=False)["recorded"]

    def health(self) -> dict:
        return self._call("GET", "/health")


def _routed(body, user):
    return body if user is None else {**body, "user": user}


def _detail(error):
    try:
        return json.loads(error.read()).get("detail", "")
    except (ValueError, AttributeError, OSError):
        return error.reason
