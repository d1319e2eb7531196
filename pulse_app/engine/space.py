"""The space backend: another running copy of this app (a HuggingFace Space or a URL) answers.

A laptop without a GPU borrows a Space's: the question and the image go to the remote app's
``/ask`` endpoint (see ``pulse_app.ui.api``) through ``gradio_client``; the answer streams back.
Every answer is labelled with the remote model, e.g. "PULSE-7B (local, cuda bf16) via
https://org-pulse.hf.space". An app with accounts (PULSE_AUTH) takes its account in the URL,
``https://USER:PASSWORD@host/``; a private Space takes a HuggingFace token (``--api-key``).
Waiting in the remote app's queue does not count towards the timeout; silence while answering
does.

>>> backend = SpaceBackend("http://127.0.0.1:7860")                   # doctest: +SKIP
>>> print("".join(backend.stream(image, [], "What is the rhythm?")))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from typing import TYPE_CHECKING, Iterator, Sequence

from pulse_app.conversation import Turn
from pulse_app.engine.backend import GenerationParams, ModelInfo
from pulse_app.errors import BackendUnreachable, PulseError

if TYPE_CHECKING:
    from PIL.Image import Image

    from pulse_app.settings import Settings

ASK_API, MODEL_INFO_API = "/ask", "/model_info"
#: HuggingFace Space stages (huggingface_hub ``SpaceStage``) -> what to tell the user.
SPACE_STAGE_PROBLEMS = {
    "BUILDING": ("is still building", "try again in a few minutes"),
    "APP_STARTING": ("is starting", "try again in a minute"),
    "RUNNING_BUILDING": ("is rebuilding", "try again in a few minutes"),
    "PAUSED": ("is paused by its owner", "ask the owner to restart it, or use another Space"),
    "STOPPED": ("is stopped", "restart it on huggingface.co, or use another Space"),
    "BUILD_ERROR": ("failed to build", "check the Space's logs on huggingface.co"),
    "RUNTIME_ERROR": ("crashed", "check the Space's logs on huggingface.co and restart it"),
    "CONFIG_ERROR": ("has a configuration error", "check the Space's README settings"),
    "NO_APP_FILE": ("has no app file", "check the Space's files"),
    "DELETING": ("is being deleted", "use another Space"),
}
POLL_S = 0.02


def space_stage_problem(space_id: str, stage: str) -> BackendUnreachable | None:
    """The error for a Space that cannot answer in this stage (None: running or asleep).

    A sleeping Space wakes up on the first request (it may take a minute).

    >>> str(space_stage_problem("org/pulse", "BUILDING"))
    'the Space org/pulse is still building. try again in a few minutes'
    """
    if stage in SPACE_STAGE_PROBLEMS:
        what, hint = SPACE_STAGE_PROBLEMS[stage]
        return BackendUnreachable(f"the Space {space_id} {what}", hint=hint)
    return None


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """An app URL without its ``user:password@`` part, and that account (apps with PULSE_AUTH).

    >>> split_credentials("https://doc:s3cret@pulse.example.org/")
    ('https://pulse.example.org/', ('doc', 's3cret'))
    """
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if not parts.scheme or parts.username is None:
        return url, None
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    bare = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare, (unquote(parts.username), unquote(parts.password or ""))


def _connection_error(url: str, error: BaseException, timeout_s: float) -> BackendUnreachable:
    """A one-line message for a failure to talk to ``url`` (refused, timeout, not an app)."""
    import httpx

    if isinstance(error, httpx.TimeoutException):
        return BackendUnreachable(f"{url} did not answer within {timeout_s:g} s",
                                  hint="the app may be busy or asleep; retry, or raise --timeout-s")
    if isinstance(error, httpx.ConnectError):
        return BackendUnreachable(f"cannot connect to {url} ({_reason(error)})",
                                  hint="check the address and that the app is running")
    if isinstance(error, httpx.HTTPStatusError) and error.response.status_code in (401, 403):
        return BackendUnreachable(f"{url} refused us (HTTP {error.response.status_code})",
                                  hint="set --api-key to a HuggingFace token with access")
    return BackendUnreachable(f"{url} is not a running Gradio app ({_reason(error)})",
                              hint="check the address: it must be a copy of the PULSE app")


def _reason(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if "refused" in text.lower():
        return "connection refused"
    return text[:120]


def _waiting_in_queue(job) -> bool:
    from gradio_client.utils import Status

    return job.status().code in (Status.JOINING_QUEUE, Status.IN_QUEUE)


class SpaceBackend:
    """A PULSE app elsewhere answers. Connects on first use; thread-safe."""

    name = "space"

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 120.0):
        self.url, self.auth = split_credentials(url.strip())
        self.token, self.timeout_s = token, float(timeout_s)
        self._client = None
        self._info: ModelInfo | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: "Settings") -> "SpaceBackend":
        if not settings.url:
            raise BackendUnreachable("the space backend needs the address of a running app",
                                     hint="pass --url https://... or a Space id (owner/name)")
        return cls(settings.url, settings.api_key, settings.timeout_s)

    @property
    def is_space_id(self) -> bool:
        return not self.url.startswith(("http://", "https://"))

    # -- connecting --
    def _check_space_stage(self) -> None:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

        try:
            runtime = HfApi(token=self.token).get_space_runtime(self.url)
        except RepositoryNotFoundError as e:
            raise BackendUnreachable(f"no Space {self.url!r} on huggingface.co (or it is private)",
                                     hint="check the id, or set --api-key to a token") from e
        except (HfHubHTTPError, OSError) as e:
            raise BackendUnreachable(f"cannot reach huggingface.co to find {self.url}",
                                     hint="check the network") from e
        if problem := space_stage_problem(self.url, str(runtime.stage)):
            raise problem

    def client(self):
        """The connected ``gradio_client.Client`` (checked to be a PULSE app)."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self):
        from gradio_client import Client
        from gradio_client.exceptions import AuthenticationError

        if self.is_space_id:
            self._check_space_stage()
        try:
            client = Client(self.url, token=self.token, auth=self.auth, verbose=False,
                            download_files=False, analytics_enabled=False,
                            httpx_kwargs={"timeout": self.timeout_s})
        except PulseError:
            raise
        except (AuthenticationError, ValueError) as error:
            if not (isinstance(error, AuthenticationError) or "Could not login" in str(error)):
                raise _connection_error(self.url, error, self.timeout_s) from error
            what = ("refused the user name or password" if self.auth else
                    "asks for a user name and password")
            raise BackendUnreachable(f"{self.url} {what}", hint="put the app's account in the "
                                     "URL: https://USER:PASSWORD@host/") from error
        except Exception as error:  # noqa: BLE001 - httpx, ValueError from the config fetch...
            raise _connection_error(self.url, error, self.timeout_s) from error
        names = {getattr(e, "api_name", None) for e in client.endpoints.values()}
        if ASK_API not in names or MODEL_INFO_API not in names:
            client.close()
            raise BackendUnreachable(f"{self.url} is a Gradio app but not a PULSE app (it has "
                                     f"no {ASK_API} endpoint)",
                                     hint="point --url at a copy of this app")
        return client

    # -- the Backend interface --
    def info(self) -> ModelInfo:
        """The remote model, labelled "<remote label> via <url>"."""
        if self._info is None:
            raw = self._run(self.client().submit(api_name=MODEL_INFO_API), "model_info")
            try:
                remote = ModelInfo(**json.loads(raw))
            except (TypeError, ValueError) as error:
                raise BackendUnreachable(f"{self.url} sent an unreadable model description",
                                         hint="update the remote app to this version") from error
            self._info = ModelInfo(model_id=remote.model_id, revision=remote.revision,
                                   backend=self.name, label=f"{remote.label} via {self.url}",
                                   trained=remote.trained, note=remote.note)
        return self._info

    def stream(self, image: "Image", history: Sequence[Turn], question: str,
               params: GenerationParams = GenerationParams(),
               cancel: threading.Event | None = None) -> Iterator[str]:
        """Yield the remote answer as it arrives; closing the stream cancels the remote job."""
        from gradio_client import handle_file

        client = self.client()
        with tempfile.TemporaryDirectory(prefix="pulse-space-") as folder:
            path = os.path.join(folder, "ecg.png")
            image.convert("RGB").save(path)
            pairs = json.dumps([[t.question, t.answer] for t in history])
            job = client.submit(handle_file(path), question, pairs, params.temperature,
                                params.top_p, params.max_new_tokens, api_name=ASK_API)
            sent = ""
            try:
                for text in self._updates(job, cancel):
                    if text.startswith(sent) and len(text) > len(sent):
                        yield text[len(sent):]
                        sent = text
            finally:
                if not job.done():
                    job.cancel()

    # -- waiting for a job --
    def _updates(self, job, cancel: threading.Event | None) -> Iterator[str]:
        """Each new output of ``job``; errors and silences longer than the timeout raise."""
        seen, last = 0, time.monotonic()
        while True:
            if cancel is not None and cancel.is_set():
                return
            outputs = job.outputs()
            if len(outputs) > seen:
                seen, last = len(outputs), time.monotonic()
                yield outputs[-1]            # cumulative text: the latest holds all the earlier
            elif job.done():
                if len(job.outputs()) > seen:
                    continue
                self._raise_if_failed(job, "ask")
                return
            elif _waiting_in_queue(job):         # other visitors first: not a silence
                last = time.monotonic()
                time.sleep(POLL_S)
            elif time.monotonic() - last > self.timeout_s:
                job.cancel()
                raise BackendUnreachable(f"{self.url} sent nothing for {self.timeout_s:g} s",
                                         hint="the app may be busy or asleep; retry, or raise "
                                              "--timeout-s")
            else:
                time.sleep(POLL_S)

    def _run(self, job, what: str):
        """The result of a non-streaming job, within the timeout."""
        for _ in self._updates(job, None):
            pass
        outputs = job.outputs()
        if not outputs:
            raise BackendUnreachable(f"{self.url} returned nothing for {what}")
        return outputs[-1]

    def _raise_if_failed(self, job, what: str) -> None:
        error = job.exception()
        if error is None:
            return
        from gradio_client.exceptions import AppError

        if "queue is full" in str(error).lower():
            raise BackendUnreachable(f"{self.url} is busy: its queue is full",
                                     hint="try again in a few minutes") from error
        if isinstance(error, AppError):            # the remote app's own one-line message
            message = str(error).strip() or f"the remote app failed on {what}"
            raise PulseError(f"{self.url}: {message}")
        raise _connection_error(self.url, error, self.timeout_s) from error
